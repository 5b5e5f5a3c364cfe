"""A user's view of the local stack: CLI and AWS APIs in, outcomes read from AWS APIs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.artifacts import IRIS_REQUEST, iris_model_bytes, write_model_dir
from tests.e2e.conftest import LocalStackProcess

SMOKE_PASSES = {"smoke_test": [{"body": IRIS_REQUEST, "expect": {"json_schema": {"required": ["predictions"]}}}]}
SMOKE_FAILS = {"smoke_test": [{"body": IRIS_REQUEST, "expect": {"json_equals": {"predictions": [1]}}}]}


def model_dir(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "model", {"model.joblib": iris_model_bytes()})


def manifest_file(tmp_path: Path, manifest: dict[str, object], name: str = "release.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(manifest))
    return str(path)


def test_release_invoke_and_history_through_the_cli(local_stack: LocalStackProcess, tmp_path: Path) -> None:
    # When a user releases a folder with the CLI and waits
    result = local_stack.cli(
        "release", str(model_dir(tmp_path)), "--model", "e2e-iris", "--version", "1",
        "--manifest", manifest_file(tmp_path, SMOKE_PASSES), "--wait",
    )  # fmt: skip

    # Then it exits 0 naming the alias and endpoint
    assert result.code == 0, result.stderr
    alias = local_stack.harness.alias("e2e-iris")
    assert alias is not None and alias["version"] == "1"
    assert alias["endpoint_name"] in result.stdout

    # And the model answers a real prediction through the alias, with the CLI and with boto3
    invoked = local_stack.cli("invoke", "e2e-iris", "--body", IRIS_REQUEST)
    assert invoked.code == 0 and json.loads(invoked.stdout) == {"predictions": [0]}
    direct = local_stack.harness.runtime.invoke_endpoint(
        EndpointName=alias["endpoint_name"], Body=IRIS_REQUEST, ContentType="application/json"
    )
    assert json.loads(direct["Body"].read()) == {"predictions": [0]}

    # And the history (CLI and table) and the events tell the same story
    records = local_stack.harness.releases("e2e-iris")
    assert [r["outcome"] for r in records] == ["SUCCEEDED"], local_stack.log_tail()
    history = local_stack.cli("history", "e2e-iris")
    assert history.code == 0, history.stderr + local_stack.log_tail()
    assert "SUCCEEDED" in history.stdout and "Started > Locked > Live" in history.stdout
    events = [e["detail-type"] for e in local_stack.harness.release_events("e2e-iris")]
    assert events == ["Release Started", "Release Succeeded"]
    execution = local_stack.harness.sfn.describe_execution(executionArn=alias["execution_arn"])
    assert execution["status"] == "SUCCEEDED"


def test_failed_smoke_test_keeps_the_alias_then_rollback_and_retention(
    local_stack: LocalStackProcess, tmp_path: Path
) -> None:
    folder = str(model_dir(tmp_path))
    passes, fails = manifest_file(tmp_path, SMOKE_PASSES), manifest_file(tmp_path, SMOKE_FAILS, "bad.json")

    def release(version: str, manifest: str) -> int:
        done = local_stack.cli(
            "release", folder, "--model", "e2e-roll", "--version", version, "--manifest", manifest, "--wait"
        )
        if done.code != 0:
            print(done.stdout, done.stderr, local_stack.log_tail())  # shown when the test fails
        return done.code

    # Given version 1 released, with nothing before it to roll back to (a one-line error, non-zero exit)
    assert release("1", passes) == 0
    nothing = local_stack.cli("rollback", "e2e-roll")
    assert nothing.code != 0 and len(nothing.stderr.strip().splitlines()) == 1
    assert "nothing to roll back to" in nothing.stderr
    # And version 2 released after it
    assert release("2", passes) == 0

    # When version 3 fails its smoke test
    failed = local_stack.cli("release", folder, "--model", "e2e-roll", "--version", "3", "--manifest", fails, "--wait")
    # Then the CLI exits non-zero with the code, and the alias stays on version 2
    assert failed.code != 0 and "SmokeTestFailed" in failed.stderr
    assert local_stack.harness.alias("e2e-roll")["version"] == "2"  # type: ignore[index]
    status = local_stack.cli("status", "e2e-roll")
    assert status.code == 0 and "SmokeTestFailed" in status.stdout

    # When version 4 is released, Then only the live and one retained endpoint remain (retain 1)
    assert release("4", passes) == 0
    assert len(local_stack.harness.sagemaker_resources("e2e-roll")["endpoints"]) == 2

    # When the user rolls back
    rolled = local_stack.cli("rollback", "e2e-roll")
    assert rolled.code == 0, rolled.stderr

    # Then the alias names version 2 again, which answers, and the roll back is announced
    alias = local_stack.harness.alias("e2e-roll")
    assert alias is not None and alias["version"] == "2"
    invoked = local_stack.cli("invoke", "e2e-roll", "--body", IRIS_REQUEST)
    assert invoked.code == 0 and "predictions" in invoked.stdout
    kinds = [e["detail-type"] for e in local_stack.harness.release_events("e2e-roll")]
    assert kinds[-1] == "Release Rolled Back"

    # And rolling back again undoes it: version 4 is live again
    again = local_stack.cli("rollback", "e2e-roll")
    assert again.code == 0, again.stderr
    assert local_stack.harness.alias("e2e-roll")["version"] == "4"  # type: ignore[index]

    # And after a rollback, the release that was live is what retention keeps
    assert local_stack.cli("rollback", "e2e-roll", "--to", "2").code == 0
    assert release("5", passes) == 0
    kept = {r["version"] for r in local_stack.harness.releases("e2e-roll") if r.get("endpoint_state") == "active"}
    assert kept == {"2", "5"}, local_stack.harness.releases("e2e-roll")
