"""Benchmark: how long each Lambda handler module takes to import, against ``import boto3`` alone.

Not a test. Run from the repository root:

    .venv/bin/python benchmarks/cold_start.py [--runs 15] [--python PATH] [--site lambda|venv] [--bytecode fresh|cached]

Every measurement is a fresh interpreter (``python -S``) with the environment Lambda gives the function:
the variables template.yaml sets (Globals and the function's own, intrinsics resolved to placeholders),
Lambda's own (AWS_LAMBDA_FUNCTION_NAME, AWS_EXECUTION_ENV, X-Ray daemon address, ...) and
``PYTHONPATH`` = the function's directory + ``src`` (the CoreLayer) + the packages Lambda provides.

- ``--site lambda`` (the default) installs those packages once, per Python version, into
  ``.dropship/lambda-site/`` with only the run-time dependencies pinned in requirements-dev.lock (boto3 as
  the runtime ships it; Powertools with X-Ray and pydantic as the Powertools layer does), so nothing else
  installed here is on the path. ``--site venv`` uses the interpreter's own site-packages.
- ``--bytecode fresh`` (the default) imports dropship and the handlers from a copy without ``__pycache__``,
  as Lambda does today (the CoreLayer is built from the .py files and /opt is read-only, so every cold
  start compiles them); ``compiled`` precompiles that copy with the measured interpreter first (what a
  layer shipping bytecode for the runtime's Python would give).
- ``--python`` picks the interpreter measured (Lambda runs python3.13; this one by default).

Prints, for ``import boto3`` and each handler module, the median CPU time of the import (the steady
measure on a shared machine) and its wall time, the handler/boto3 ratio, and a ``-X importtime``
breakdown of what each handler imports beyond boto3 (each module's least self time over a few runs), summed
by top-level package.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

REPO = Path(__file__).resolve().parent.parent
LAMBDA_SITE = REPO / ".dropship" / "lambda-site"
# What a function has at run time besides its code: boto3 from the runtime, the Powertools layer.
RUNTIME_PACKAGES = (
    "boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3",
    "aws_lambda_powertools", "aws-xray-sdk", "wrapt", "pydantic", "pydantic_core", "typing_extensions",
    "typing-inspection", "annotated-types",
)  # fmt: skip
PSEUDO = {
    "AWS::StackName": "dropship",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
TIMER = (
    "import time; cpu, wall = time.process_time(), time.perf_counter(); import {module}; "
    "print(time.process_time() - cpu, time.perf_counter() - wall)"
)


def resolve(value: Any, parameters: dict[str, Any]) -> str:
    """An environment value with intrinsics replaced by what a deployed stack would plausibly hold."""
    if isinstance(value, str | int | float):
        return str(value)
    if "Ref" in value:
        name = value["Ref"]
        return PSEUDO.get(name) or str(parameters.get(name, {}).get("Default", f"{name}-placeholder"))
    if "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        return re.sub(r"\$\{([^}]+)\}", lambda m: resolve({"Ref": m.group(1)}, parameters), text)
    if "Fn::If" in value:
        return resolve(value["Fn::If"][1], parameters)
    if "Fn::GetAtt" in value:
        return f"arn:aws:placeholder:us-east-1:123456789012:{'.'.join(value['Fn::GetAtt'])}"
    raise ValueError(f"cannot resolve {value!r}")


def handlers() -> dict[Path, dict[str, dict[str, str]]]:
    """Each function directory, with the environment of every function whose code lives there."""
    template = yaml_parse((REPO / "template.yaml").read_text())
    parameters = template["Parameters"]
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    found: dict[Path, dict[str, dict[str, str]]] = defaultdict(dict)
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        variables = {**globals_env, **properties.get("Environment", {}).get("Variables", {})}
        env = {key: resolve(value, parameters) for key, value in variables.items()}
        memory = properties.get("MemorySize", template["Globals"]["Function"].get("MemorySize", 128))
        env.update(lambda_environment(name, properties["Handler"], memory))
        found[REPO / properties["CodeUri"]][name] = env
    return dict(found)


def lambda_environment(function: str, handler: str, memory: int) -> dict[str, str]:
    return {
        "AWS_LAMBDA_FUNCTION_NAME": f"dropship-{function}-AbCdEf123456",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/dropship-{function}-AbCdEf123456",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEEXAMPLE00",
        "AWS_SECRET_ACCESS_KEY": "example-secret-key-for-benchmarks-only",
        "AWS_SESSION_TOKEN": "example-session-token",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
        "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129",
        "_AWS_XRAY_DAEMON_PORT": "2000",
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin/:/bin",
    }


def site_packages(kind: str, python: str) -> list[str]:
    if kind == "venv":
        out = subprocess.run([python, "-c", "import site; print(*site.getsitepackages(), sep='\\n')"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout.split()
    version = subprocess.run([python, "-c", "import sys; print(f'py{sys.version_info[0]}{sys.version_info[1]}')"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    target = LAMBDA_SITE / version
    if not (target / "boto3").is_dir():
        wanted = {_normalise(p) for p in RUNTIME_PACKAGES}
        lock = (REPO / "requirements-dev.lock").read_text().splitlines()
        pins = [line for line in lock if _normalise(line.split("==")[0]) in wanted]
        print(f"installing {len(pins)} pinned run-time packages into {target.relative_to(REPO)} ...", flush=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), *pins],
                       check=True)  # fmt: skip
    return [str(target)]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run(
    python: str, module: str, path: list[str], env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": os.pathsep.join(path), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [python, "-S", *extra, "-c", TIMER.format(module=module)], env=env, capture_output=True, text=True, check=True
    )


def timed(python: str, module: str, path: list[str], env: dict[str, str]) -> tuple[float, float]:
    cpu, wall = run(python, module, path, env).stdout.split()
    return float(cpu), float(wall)


# What every handler must load whatever its own code: boto3, pydantic with one model, Powertools' Logger
# and Metrics. Its ratio to boto3 alone is the floor no handler can go under.
FLOOR = """
import boto3
from aws_lambda_powertools import Logger, Metrics
from pydantic import BaseModel


class Request(BaseModel):
    model: str


Request(model="churn")
Logger(service="dropship")
Metrics(namespace="Dropship", service="dropship")
"""


def code_copy(bytecode: str, scratch: Path, python: str) -> Path:
    """The handlers and dropship as a deployed function has them: sources only, or sources and bytecode."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "functions", scratch / "functions", ignore=ignore)
    shutil.copytree(REPO / "src" / "dropship", scratch / "src" / "dropship", ignore=ignore)
    (scratch / "floor").mkdir()
    (scratch / "floor" / "required_libraries.py").write_text(FLOOR)
    if bytecode == "compiled":
        subprocess.run([python, "-m", "compileall", "-q", str(scratch)], check=True)
    return scratch


def import_profile(python: str, module: str, path: list[str], env: dict[str, str]) -> dict[str, int]:
    """Self time in microseconds of every module imported, from ``-X importtime``."""
    result = run(python, module, path, env, "-X", "importtime")
    times = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|(\s+)(\S+)", line)
        if match:
            times[match.group(3)] = int(match.group(1))
    return times


def least(profiles: Iterable[dict[str, int]]) -> dict[str, int]:
    """Each module's smallest self time over several runs: what it costs when nothing else gets in the way."""
    smallest: dict[str, int] = {}
    for profile in profiles:
        for module, micros in profile.items():
            smallest[module] = min(smallest.get(module, micros), micros)
    return smallest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per measurement (median)")
    parser.add_argument("--top", type=int, default=8, help="packages shown in each import breakdown")
    parser.add_argument("--profile-runs", type=int, default=5, help="-X importtime runs (each module's minimum)")
    parser.add_argument("--site", choices=["lambda", "venv"], default="lambda")
    parser.add_argument("--bytecode", choices=["fresh", "compiled"], default="fresh")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()

    site = site_packages(args.site, args.python)
    functions = handlers()
    any_env = next(iter(next(iter(functions.values())).values()))
    with tempfile.TemporaryDirectory() as scratch:
        root = code_copy(args.bytecode, Path(scratch), args.python)
        # A handler module is imported once per directory, with the environment of its first function.
        targets = {
            directory: (next(iter(envs.values())), [str(root / "functions" / directory.name), str(root / "src"), *site])
            for directory, envs in functions.items()
        }
        samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        floor_path = [str(root / "floor"), *site]
        for _ in range(args.runs):  # interleaved: a busy moment slows the baseline and the handlers alike
            samples["boto3"].append(timed(args.python, "boto3", site, any_env))
            samples["floor"].append(timed(args.python, "required_libraries", floor_path, any_env))
            for directory, (env, path) in targets.items():
                samples[directory.name].append(timed(args.python, "app", path, env))
        boto3_modules = set(import_profile(args.python, "boto3", site, any_env))
        profiles = {
            directory: import_profile(args.python, "app", path, env) for directory, (env, path) in targets.items()
        }

    version = subprocess.run([args.python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip

    def median_ms(name: str, index: int) -> float:
        return statistics.median(sample[index] for sample in samples[name]) * 1000

    boto3_cpu, boto3_wall = median_ms("boto3", 0), median_ms("boto3", 1)
    print(f"\nPython {version}, site: {args.site}, bytecode: {args.bytecode}, median of {args.runs} fresh interpreters")
    print(f"{'':34}{'CPU':>9}{'wall':>10}{'ratio (CPU)':>13}   functions")
    print(f"{'import boto3 alone':<34}{boto3_cpu:6.1f} ms{boto3_wall:7.1f} ms{1:12.2f}x")
    floor_cpu, floor_wall = median_ms("floor", 0), median_ms("floor", 1)
    floor_label = "+ pydantic, Powertools (the floor)"
    print(
        f"{floor_label:<34}{floor_cpu:6.1f} ms{floor_wall:7.1f} ms{floor_cpu / boto3_cpu:12.2f}x"
        "   what every handler loads before its own code"
    )
    ratios = []
    for directory, envs in functions.items():
        cpu, wall = median_ms(directory.name, 0), median_ms(directory.name, 1)
        ratios.append(cpu / boto3_cpu)
        print(f"{'functions/' + directory.name + '/app.py':<34}{cpu:6.1f} ms{wall:7.1f} ms{cpu / boto3_cpu:12.2f}x   "
              f"{', '.join(envs)}")  # fmt: skip
    print(f"{'worst ratio':<34}{'':19}{max(ratios):12.2f}x   (target: under 1.50x)")

    print(
        f"\nImported beyond boto3 (-X importtime self time in ms, each module's least of {args.profile_runs} runs, "
        "summed by top-level package):"
    )
    for directory, profile in profiles.items():
        by_package: dict[str, int] = defaultdict(int)
        for module, micros in profile.items():
            if module not in boto3_modules:
                by_package[module.split(".")[0]] += micros
        total = sum(by_package.values()) / 1000
        top = sorted(by_package.items(), key=lambda item: -item[1])[: args.top]
        print(f"  {directory.name:<16}{total:6.1f}: " + ", ".join(f"{name} {us / 1000:.1f}" for name, us in top))


if __name__ == "__main__":
    main()
