"""`dropship logs` on the local stack: the log files its endpoints and Lambda tasks really write."""

from __future__ import annotations

import json
from pathlib import Path

from tests.artifacts import IRIS_REQUEST, iris_model_bytes, write_model_dir
from tests.e2e.conftest import LocalStackProcess

SMOKE_PASSES = {"smoke_test": [{"body": IRIS_REQUEST, "expect": {"json_schema": {"required": ["predictions"]}}}]}
SMOKE_FAILS = {"smoke_test": [{"body": IRIS_REQUEST, "expect": {"json_equals": {"predictions": [1]}}}]}


def json_lines(text: str) -> list[dict[str, object]]:
    found = []
    for line in text.splitlines():
        payload = line.split(" ", 1)[-1] if not line.startswith("{") else line
        if payload.startswith("{"):
            found.append(json.loads(payload))
    return found


def test_logs_of_the_live_endpoint_and_of_a_failed_release(local_stack: LocalStackProcess, tmp_path: Path) -> None:
    # Given a folder whose release.json the CLI uploads as the manifest: version 1 passes its smoke test
    folder = write_model_dir(tmp_path / "model", {"model.joblib": iris_model_bytes()})
    (folder / "release.json").write_text(json.dumps(SMOKE_PASSES))
    released = local_stack.cli("release", str(folder), "--model", "e2e-logs", "--version", "1", "--wait")
    assert released.code == 0, released.stderr + local_stack.log_tail()
    assert "(the folder's release.json; not packed)" in released.stdout

    # When the logs of the model are asked for
    endpoint = local_stack.cli("logs", "e2e-logs")

    # Then they are the live endpoint's container log: the inference server starting and loading the model
    assert endpoint.code == 0, endpoint.stderr
    alias = local_stack.harness.alias("e2e-logs")
    assert alias is not None and alias["endpoint_name"] in endpoint.stderr
    events = {line.get("event") for line in json_lines(endpoint.stdout)}
    assert {"starting", "model_loaded"} <= events, endpoint.stdout

    # Given version 2 fails its smoke test (its manifest given with --manifest, over the folder's)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(SMOKE_FAILS))
    failed = local_stack.cli(
        "release", str(folder), "--model", "e2e-logs", "--version", "2", "--manifest", str(bad), "--wait"
    )
    assert failed.code != 0 and "SmokeTestFailed" in failed.stderr

    # When its task logs are asked for
    tasks = local_stack.cli("logs", "e2e-logs", "--version", "2", "--execution")

    # Then they hold its tasks' lines, correlated with its execution, each invocation from START to END
    assert tasks.code == 0, tasks.stderr
    (record,) = [r for r in local_stack.harness.releases("e2e-logs") if r["version"] == "2"]
    correlated = [line for line in json_lines(tasks.stdout) if "level" in line]  # log records, not metric blobs
    assert correlated and {line.get("correlation_id") for line in correlated} == {record["execution_arn"]}
    assert any(line.get("message") == "cleaned up after a failed release" for line in correlated)
    texts = [line.split(" ", 1)[1] for line in tasks.stdout.splitlines()]
    assert any(text.startswith("START RequestId: ") for text in texts)
    assert any(text.startswith("END RequestId: ") for text in texts)
    # And nothing of version 1's execution is among them
    assert alias["execution_arn"] not in tasks.stdout
