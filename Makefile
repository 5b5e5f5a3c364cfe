# dropship: the commands the README names. Everything installs into .venv (project) and .venv-sam (SAM CLI,
# kept apart because it pins its own boto3).

PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0

.PHONY: help install test unit integration e2e lint demo build validate deploy diagram schema lock benchmark benchmark-local clean

help:
	@echo "make demo       try dropship end to end on this machine (no AWS account needed)"
	@echo "make test       lint + the whole test suite (unit, integration, end-to-end, container)"
	@echo "make build      sam build (then: sam deploy --guided)"
	@echo "make benchmark  the inference server against the classic design"

$(BIN)/activate: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/activate

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet "aws-sam-cli==$(SAM_CLI_VERSION)"

install: $(BIN)/activate

lint: install $(SAM)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint container/Dockerfile
	$(BIN)/mypy src/dropship container/dropship_serve
	for handler in functions/*/app.py; do $(BIN)/mypy $$handler || exit 1; done
	$(SAM) validate --lint
	@$(SAM) build --no-cached > .sam-build.log 2>&1 || (cat .sam-build.log; false)
	@echo "sam build: ok (.aws-sam/build)"

test: lint
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

demo: install
	bash scripts/demo.sh

validate: $(SAM)
	$(SAM) validate --lint

build: $(SAM)
	$(SAM) build

deploy: build
	$(SAM) deploy --guided

diagram: install
	$(BIN)/python scripts/update_readme_diagram.py

schema: install
	$(BIN)/python -m dropship.manifest > schemas/release.schema.json

# The inference server against the classic design (nginx + gunicorn -k gevent + Flask), with wrk as the
# load generator: nginx and wrk are Debian packages (installed here when run as root), gevent comes
# with `make install`. About 2 minutes; run it when `uptime` shows a low load.
BENCHMARK_TOOLS := nginx wrk
benchmark: install
	@missing="$$(for tool in $(BENCHMARK_TOOLS); do command -v $$tool >/dev/null || printf ' %s' $$tool; done)"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing"; apt-get update -qq && apt-get install -y -qq$$missing >/dev/null; \
	elif [ -n "$$missing" ]; then \
		echo "make benchmark needs$$missing: apt-get install -y$$missing (as root)"; exit 1; \
	fi
	$(BIN)/python benchmarks/serving.py

# 100 concurrent releases through the local stack (several minutes; run it on a quiet machine).
benchmark-local: install
	$(BIN)/python benchmarks/local_scale.py

# Re-pin the development environment after changing pyproject.toml.
lock:
	rm -rf /tmp/dropship-lock && $(PYTHON) -m venv /tmp/dropship-lock
	/tmp/dropship-lock/bin/pip install --quiet ".[dev]"
	/tmp/dropship-lock/bin/pip freeze --exclude-editable | grep -v '^dropship' > requirements-dev.lock

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
