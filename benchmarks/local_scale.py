"""Benchmark: many concurrent releases through the local stack. Do they all finish, and at what cost?

Not a test. Run from the repository root when the machine is quiet (`make benchmark-local`):

    .venv/bin/python benchmarks/local_scale.py [--releases 100] [--poll 2]

Starts a ``LocalStack`` in this process on the project's real template and state machine (short status
polls, as the integration tests use), uploads N different small models at once (a linear model in
``code/inference.py``, written the way users of SageMaker's framework containers write one), waits for
every release, checks each model's alias and invokes its endpoint, then stops the stack. Prints how many
releases succeeded or failed, the wall time, and the peak resident memory (RSS, summed) and process
count of this process and everything it started (moto, endpoint servers and their workers, Lambda
workers), sampled every 0.5 s, and what was left running after the stop.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from dropship.local import LocalStack, free_port

REPO = Path(__file__).resolve().parent.parent

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

INFERENCE_PY = """\
import json
import os


def model_fn(model_dir):
    with open(os.path.join(model_dir, "weights.json")) as fh:
        return json.load(fh)


def input_fn(request_body, request_content_type):
    if request_content_type != "application/json":
        raise ValueError(f"unsupported content type {request_content_type}")
    return json.loads(request_body)["instances"]


def predict_fn(rows, weights):
    return [sum(w * x for w, x in zip(weights["coef"], row)) + weights["intercept"] for row in rows]


def output_fn(predictions, accept):
    return json.dumps({"predictions": predictions}), "application/json"
"""
ROW = [5.1, 3.5, 1.4, 0.2]  # the stack's default smoke-test row


def model_tarball(index: int) -> bytes:
    weights = {"coef": [1.0, 2.0, 3.0, float(index)], "intercept": 0.5}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (
            ("code/inference.py", INFERENCE_PY.encode()),
            ("weights.json", json.dumps(weights).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def expected_prediction(index: int) -> float:
    return 1.0 * ROW[0] + 2.0 * ROW[1] + 3.0 * ROW[2] + index * ROW[3] + 0.5


# -- the process tree ---------------------------------------------------------------------------------


def process_tree(root: int) -> dict[int, int]:
    """pid -> resident bytes of ``root`` and every process descended from it (from /proc)."""
    parents: dict[int, int] = {}
    resident: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z":
            continue
        parents[int(entry.name)] = int(fields[1])
        resident[int(entry.name)] = int(fields[21]) * PAGE_SIZE
    tree: dict[int, int] = {}
    for pid in resident:
        ancestor = pid
        while ancestor not in (0, 1) and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root:
            tree[pid] = resident[pid]
    return tree


@dataclass
class Peaks:
    rss: int = 0
    rss_processes: int = 0
    rss_at_s: float = 0.0
    processes: int = 0
    samples: int = 0
    started: float = field(default_factory=time.monotonic)


def sample(peaks: Peaks, stop: threading.Event, interval_s: float = 0.5) -> None:
    root = os.getpid()
    while not stop.wait(interval_s):
        tree = process_tree(root)
        total = sum(tree.values())
        peaks.samples += 1
        peaks.processes = max(peaks.processes, len(tree))
        if total > peaks.rss:
            peaks.rss, peaks.rss_processes, peaks.rss_at_s = total, len(tree), time.monotonic() - peaks.started


# -- releases -----------------------------------------------------------------------------------------


def wait_for_releases(sfn: Any, state_machine: str, count: int, deadline: float) -> dict[str, dict[str, Any]]:
    """Every execution of the state machine once ``count`` of them have finished: arn -> description."""
    finished: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine):
            for execution in page["executions"]:
                arn = execution["executionArn"]
                if arn not in finished and execution["status"] in TERMINAL:
                    finished[arn] = sfn.describe_execution(executionArn=arn)
        if len(finished) >= count:
            return finished
        time.sleep(2)
    return finished


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=100, help="concurrent releases of different models")
    parser.add_argument("--poll", default="2", help="EndpointPollSeconds (how often a release checks its endpoint)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    args = parser.parse_args()

    peaks = Peaks()
    stop_sampling = threading.Event()
    sampler = threading.Thread(target=sample, args=(peaks, stop_sampling), daemon=True)
    sampler.start()

    parameters = {
        "EndpointPollSeconds": args.poll,
        "EndpointTimeoutSeconds": "900",
        "LockTimeoutSeconds": "900",
    }
    stack = LocalStack(REPO, port=free_port(), parameter_overrides=parameters)
    started = time.monotonic()
    stack.start()
    print(f"local stack ready in {time.monotonic() - started:.1f} s on {stack.endpoint_url}", flush=True)
    session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name=stack.region)
    s3, sfn, ssm, runtime = (
        session.client(name, endpoint_url=stack.endpoint_url)  # type: ignore[call-overload]
        for name in ("s3", "stepfunctions", "ssm", "sagemaker-runtime")
    )
    bucket = stack.outputs["ModelBucketName"]
    models = {f"bench-{index:03d}": index for index in range(args.releases)}
    ok = False
    try:
        release_start = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(
                    lambda model: s3.put_object(
                        Bucket=bucket, Key=f"models/{model}/1/model.tar.gz", Body=model_tarball(models[model])
                    ),
                    models,
                )
            )
        uploaded_s = time.monotonic() - release_start
        print(f"uploaded {len(models)} models in {uploaded_s:.1f} s; waiting for the releases ...", flush=True)
        finished = wait_for_releases(
            sfn, stack.outputs["ReleaseStateMachineArn"], len(models), time.monotonic() + args.timeout
        )
        release_s = time.monotonic() - release_start

        by_model: dict[str, list[dict[str, Any]]] = {}
        for execution in finished.values():
            key = json.loads(execution["input"]).get("detail", {}).get("object", {}).get("key", "")
            by_model.setdefault(key.split("/")[1] if key.count("/") >= 3 else key, []).append(execution)
        succeeded = [m for m in models if [e["status"] for e in by_model.get(m, [])] == ["SUCCEEDED"]]
        failed = {m: by_model.get(m, []) for m in models if m not in succeeded}

        answered = 0
        for model in succeeded:
            alias = json.loads(
                ssm.get_parameter(Name=f"{stack.outputs['AliasPrefix']}/{model}/live")["Parameter"]["Value"]
            )
            reply = runtime.invoke_endpoint(
                EndpointName=alias["endpoint_name"],
                Body=json.dumps({"instances": [ROW]}),
                ContentType="application/json",
            )
            prediction = json.loads(reply["Body"].read())["predictions"][0]
            answered += abs(prediction - expected_prediction(models[model])) < 1e-9

        print(f"releases: {len(succeeded)} succeeded, {len(failed)} failed or missing (of {len(models)})")
        for model, executions in sorted(failed.items())[:10]:
            summary = ", ".join(f"{e['status']} {e.get('error', '')}".strip() for e in executions) or "no execution"
            print(f"  {model}: {summary}")
        print(f"endpoints answering with their own model's prediction: {answered} of {len(succeeded)}")
        print(f"wall time: {release_s:.1f} s from the first upload to the last release ({uploaded_s:.1f} s uploading)")
        ok = len(succeeded) == len(models) and answered == len(succeeded)
    finally:
        stopping = time.monotonic()
        stack.stop()
        stop_s = time.monotonic() - stopping
        stop_sampling.set()
        sampler.join()
        left = {pid for pid in process_tree(os.getpid()) if pid != os.getpid()}
        print(
            f"peak RSS of the process tree: {peaks.rss / 2**30:.2f} GiB "
            f"({peaks.rss_processes} processes, {peaks.rss_at_s:.0f} s after start; summed RSS counts shared pages "
            "once per process)"
        )
        print(f"peak process count: {peaks.processes} ({peaks.samples} samples)")
        print(f"stop: {stop_s:.1f} s; processes left running after it: {len(left)}")
    return 0 if ok and not left else 1


if __name__ == "__main__":
    sys.exit(main())
