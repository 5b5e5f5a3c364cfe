#!/usr/bin/env bash
# `make demo`: dropship end to end on this machine, no AWS account needed.
#
# Starts the local stack (an emulated AWS account running the real template, state machine, Lambda
# code and inference container), releases a small iris model, calls it through its alias and reads its
# endpoint's log, then shows a release whose smoke test fails leaving the alias where it was, that
# release's task logs, and a release that passes its smoke test but fails under real traffic and rolls
# itself back during its watch. The stack is the demo's own (its own state dir, and port 4566 or another free
# port when 4566 is taken), never one someone else started; it is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DROPSHIP="$ROOT/.venv/bin/dropship"
PYTHON="$ROOT/.venv/bin/python"
SAMPLE='{"instances": [[5.1, 3.5, 1.4, 0.2]]}'

for tool in "$DROPSHIP" "$PYTHON"; do
  if [[ ! -x "$tool" ]]; then
    echo "demo: $tool is missing; run \`make install\` first" >&2
    exit 1
  fi
done

if [[ -t 1 ]]; then BOLD=$'\033[1m'; RESET=$'\033[0m'; else BOLD=""; RESET=""; fi
step=0
# Fails the demo unless iris/live points at version $1.
expect_live_version() {
  local version
  version="$("$DROPSHIP" status iris --local --json |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[0]["aliases"]["live"]["version"])')"
  if [[ "$version" != "$1" ]]; then
    echo "demo: the live alias points at version $version, expected $1" >&2
    exit 1
  fi
}

heading() {
  step=$((step + 1))
  printf '\n%s== %d. %s%s\n' "$BOLD" "$step" "$1" "$RESET"
}
run() {
  printf '$ %s\n' "$*"
  "$@"
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dropship-demo.XXXXXX")"
# The demo's own local stack: its pid file and logs under $WORK, on a port of its own.
export DROPSHIP_HOME="$WORK/home"
unset DROPSHIP_ENDPOINT_URL
DROPSHIP_LOCAL_PORT="$("$PYTHON" -c '
import socket
from dropship.local.ports import free_port
with socket.socket() as sock:
    try:
        sock.bind(("127.0.0.1", 4566))
        print(4566)
    except OSError:
        print(free_port())
')"
export DROPSHIP_LOCAL_PORT
STARTED_STACK=0
cleanup() {
  local status=$?
  if [[ $STARTED_STACK -eq 1 ]]; then
    printf '\n%s== Stopping the local stack this demo started%s\n' "$BOLD" "$RESET"
    "$DROPSHIP" local down || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

heading "Start a local stack (an emulated AWS account on http://127.0.0.1:$DROPSHIP_LOCAL_PORT)"
if [[ $DROPSHIP_LOCAL_PORT != 4566 ]]; then
  echo "Port 4566 is taken (another local stack?): this demo runs its own on port $DROPSHIP_LOCAL_PORT."
fi
STARTED_STACK=1
run "$DROPSHIP" local up --detach

heading "Train a small model: scikit-learn LogisticRegression on iris"
run "$PYTHON" demo/train.py "$WORK/iris"

heading "Release it as iris version 1 (manifest demo/release-v1.json: a smoke test that must pass)"
run "$DROPSHIP" release "$WORK/iris" --model iris --version 1 --manifest demo/release-v1.json --wait --local

heading "Invoke it through its alias, as any client would"
run "$DROPSHIP" invoke iris --body "$SAMPLE" --local
echo

heading "The endpoint's container log (the last lines)"
printf '$ %s | tail -n 4\n' "$DROPSHIP logs iris --local"
"$DROPSHIP" logs iris --local | tail -n 4

heading "The release history of iris"
run "$DROPSHIP" history iris --local

heading "Release version 2 with demo/release-v2-bad.json, whose smoke test expects the wrong answer"
set +e
run "$DROPSHIP" release "$WORK/iris" --model iris --version 2 --manifest demo/release-v2-bad.json --wait --local
code=$?
set -e
if [[ $code -eq 0 ]]; then
  echo "demo: version 2 was expected to fail its smoke test, but it was released" >&2
  exit 1
fi
echo "-> dropship release --wait exited $code: the release failed and was cleaned up."

heading "Its task logs: the Lambda functions' lines for that release's execution (the last lines)"
printf '$ %s | tail -n 6\n' "$DROPSHIP logs iris --version 2 --execution --local"
"$DROPSHIP" logs iris --version 2 --execution --local | tail -n 6

heading "Status: the alias is still on version 1"
run "$DROPSHIP" status iris --local
expect_live_version 1
echo "-> iris/live still points at version 1; the failed release left nothing behind."

heading "Release version 3 under production traffic: it passes its smoke test, but fails on larger flowers"
mkdir -p "$WORK/iris-v3/code"
cp "$WORK/iris/model.joblib" "$WORK/iris-v3/"
cp demo/inference_v3.py "$WORK/iris-v3/code/inference.py"
echo "(demo/traffic.py sends flowers of every kind through the alias meanwhile; the manifest,"
echo " demo/release-v3-watched.json, watches the release for 90 s with at most 10% of 5xx answers)"
"$PYTHON" demo/traffic.py iris &
TRAFFIC=$!
set +e
run "$DROPSHIP" release "$WORK/iris-v3" --model iris --version 3 --manifest demo/release-v3-watched.json --wait --local
code=$?
set -e
kill "$TRAFFIC" 2>/dev/null || true
wait "$TRAFFIC" 2>/dev/null || true
v3_code="$("$DROPSHIP" history iris --local --json |
  "$PYTHON" -c 'import json, sys; print(next(r.get("error_code") for r in json.load(sys.stdin) if r["version"] == "3"))')"
if [[ $code -eq 0 || "$v3_code" != "AlarmTriggered" ]]; then
  echo "demo: version 3 was expected to be rolled back by its watch (AlarmTriggered), got exit $code, $v3_code" >&2
  exit 1
fi
echo "-> its watch saw the 5xx share go over 10% and rolled the alias back to version 1 (AlarmTriggered)."

heading "The history shows the automatic rollback and why"
run "$DROPSHIP" history iris --local
expect_live_version 1

printf '\n%sDemo complete.%s Release your own model with: dropship release MODEL_DIR --model NAME --version 1 --wait --local\n' \
  "$BOLD" "$RESET"
