"""SageMaker endpoints as real local processes running the inference container."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from dropship.local import LocalStack
from dropship.local.hosting import endpoint_environment, event_status, requirements_file
from tests.local.conftest import await_exit, group_of, wait_until
from tests.local.documented import assert_shaped_like, documented
from tests.local.sample_project import model_tarball

ACCOUNT, REGION = "123456789012", "us-east-1"
REAL_SERVE = Path(__file__).resolve().parents[2] / "container" / "serve"
MISSING_PACKAGE = "dropship-test-package-that-does-not-exist==1.0"
EXITED = "The primary container for production variant AllTraffic exited (exit code 3) before passing the ping health"

INFLECTION = Path(__file__).resolve().parents[1] / "container" / "samples" / "inflection"


def _release(aws, stack: LocalStack, name: str, files: dict[str, bytes], environment: dict | None = None) -> None:
    """Upload a model and create model, endpoint config and endpoint called ``name``."""
    bucket = stack.outputs["BucketName"]
    aws("s3").put_object(Bucket=bucket, Key=f"released/{name}/model.tar.gz", Body=model_tarball(files))
    sm = aws("sagemaker")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
        PrimaryContainer={
            "Image": "local/dropship-serve:latest",
            "ModelDataUrl": f"s3://{bucket}/released/{name}/model.tar.gz",
            "Environment": environment or {},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)


def _settled(aws, name: str) -> dict:
    sm = aws("sagemaker")
    return wait_until(
        lambda: (d := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] not in ("Creating", "Updating") and d,
        60,
    )


_received: dict[str, list[dict]] = {}


def _events(aws, stack: LocalStack, name: str) -> list[dict]:
    """Every SageMaker Endpoint State Change event of endpoint ``name`` received so far."""
    sqs = aws("sqs")
    while True:
        messages = sqs.receive_message(QueueUrl=stack.outputs["EndpointEventsUrl"], MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return _received.get(name, [])
        for message in messages:
            event = json.loads(message["Body"])
            _received.setdefault(event["detail"]["EndpointName"], []).append(event)
            sqs.delete_message(QueueUrl=stack.outputs["EndpointEventsUrl"], ReceiptHandle=message["ReceiptHandle"])


def _state_changes(aws, stack: LocalStack, name: str) -> list[str]:
    return [event["detail"]["EndpointStatus"] for event in _events(aws, stack, name)]


def test_an_endpoint_goes_creating_then_in_service_and_serves_predictions(stack: LocalStack, aws) -> None:
    # When an endpoint is created for a model
    _release(aws, stack, "linear-1", {"model.json": json.dumps({"coef": [1, 2]}).encode()})

    # Then it is InService with a real process behind it (after Creating: the state changes below say so)
    assert _settled(aws, "linear-1")["EndpointStatus"] == "InService"
    pid = stack.hosting.endpoint_pid(ACCOUNT, REGION, "linear-1")
    assert pid is not None

    # And InvokeEndpoint returns the container's prediction, content type and custom attributes
    reply = aws("sagemaker-runtime").invoke_endpoint(
        EndpointName="linear-1",
        Body=json.dumps({"instances": [[1, 1], [2, 3]]}),
        ContentType="application/json",
        Accept="application/json",
        CustomAttributes="trace=1",
    )
    assert json.loads(reply["Body"].read()) == {"predictions": [3, 8]}
    assert reply["ContentType"] == "application/json"
    assert reply["CustomAttributes"] == "seen=trace=1"
    assert reply["InvokedProductionVariant"] == "AllTraffic"

    # And state changes were put on the default bus, spelled as in the event AWS documents
    assert wait_until(lambda: len(_state_changes(aws, stack, "linear-1")) == 2, 5)
    assert _state_changes(aws, stack, "linear-1") == ["CREATING", "IN_SERVICE"]

    # When it is deleted, Then its process is gone
    aws("sagemaker").delete_endpoint(EndpointName="linear-1")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_container_error_is_a_model_error(stack: LocalStack, aws) -> None:
    _release(aws, stack, "linear-2", {"model.json": json.dumps({"coef": [1]}).encode()})
    assert _settled(aws, "linear-2")["EndpointStatus"] == "InService"
    # When the container answers 400
    with pytest.raises(ClientError) as caught:
        aws("sagemaker-runtime").invoke_endpoint(
            EndpointName="linear-2", Body=b"not json", ContentType="application/json"
        )
    # Then SageMaker's ModelError comes back with the original status and message
    error: dict = dict(caught.value.response)
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert "bad input" in error["OriginalMessage"]
    assert error["Error"]["Message"].startswith("Received client error (400) from primary with message")
    # pointing at the endpoint's log on this machine (there is no CloudWatch log group locally)
    log_path = stack.hosting.log_path("linear-2")
    assert log_path == stack.log_dir / "endpoints" / "linear-2.log"
    assert str(log_path) in error["Error"]["Message"]
    assert "cloudwatch" not in error["Error"]["Message"].lower()
    assert "serving on" in log_path.read_text()
    # And a binary body reaches the container as is
    with pytest.raises(ClientError) as binary:
        aws("sagemaker-runtime").invoke_endpoint(
            EndpointName="linear-2", Body=b"\x93NUMPY\xff\xfe", ContentType="application/x-npy"
        )
    assert binary.value.response["Error"]["Code"] == "ModelError"
    aws("sagemaker").delete_endpoint(EndpointName="linear-2")


def test_a_failing_model_makes_the_endpoint_failed_with_the_log_tail(stack: LocalStack, aws) -> None:
    # When the container exits while loading the model
    _release(aws, stack, "broken-1", {"FAIL": b"", "model.json": b"{}"})
    described = _settled(aws, "broken-1")
    # Then the endpoint is Failed, and the reason carries the container's last log lines
    assert described["EndpointStatus"] == "Failed"
    assert "ValueError: the model is corrupt" in described["FailureReason"]
    assert "exited (exit code 3) before passing the ping health check" in described["FailureReason"]
    assert str(stack.hosting.log_path("broken-1")) in described["FailureReason"]
    assert len(described["FailureReason"]) <= 1024
    # And it cannot be invoked
    with pytest.raises(ClientError) as caught:
        aws("sagemaker-runtime").invoke_endpoint(EndpointName="broken-1", Body=b"[[1]]", ContentType="application/json")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    aws("sagemaker").delete_endpoint(EndpointName="broken-1")


def test_an_unknown_endpoint_is_a_validation_error(aws) -> None:
    with pytest.raises(ClientError) as caught:
        aws("sagemaker-runtime").invoke_endpoint(EndpointName="nope", Body=b"[]", ContentType="application/json")
    assert caught.value.response["Error"]["Code"] == "ValidationError"


def test_missing_model_data_fails_the_endpoint(stack: LocalStack, aws) -> None:
    sm = aws("sagemaker")
    sm.create_model(
        ModelName="missing-1",
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
        PrimaryContainer={"Image": "x", "ModelDataUrl": f"s3://{stack.outputs['BucketName']}/nothing/model.tar.gz"},
    )
    sm.create_endpoint_config(
        EndpointConfigName="missing-1",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "missing-1",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.create_endpoint(EndpointName="missing-1", EndpointConfigName="missing-1")
    described = _settled(aws, "missing-1")
    assert described["EndpointStatus"] == "Failed"
    assert "Could not find model data" in described["FailureReason"]
    sm.delete_endpoint(EndpointName="missing-1")


@pytest.mark.skipif(not REAL_SERVE.exists(), reason="container/serve not written yet")
def test_the_real_container_serves_a_scikit_learn_model(stack: LocalStack, aws, tmp_path: Path) -> None:
    import io

    import joblib
    from sklearn.linear_model import LinearRegression

    # Given a scikit-learn model saved with joblib, served by the project's real container/serve
    model = LinearRegression().fit([[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0])
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    original = stack.hosting.serve_command
    stack.hosting.serve_command = [sys.executable, str(REAL_SERVE)]
    try:
        _release(aws, stack, "sklearn-1", {"model.joblib": buffer.getvalue()})
        described = _settled(aws, "sklearn-1")
    finally:
        stack.hosting.serve_command = original
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    # When it is invoked with JSON instances
    reply = aws("sagemaker-runtime").invoke_endpoint(
        EndpointName="sklearn-1", Body=json.dumps({"instances": [[3.0]]}), ContentType="application/json"
    )
    # Then the prediction is the model's
    predictions = json.loads(reply["Body"].read())["predictions"]
    assert predictions == [pytest.approx(7.0)]
    aws("sagemaker").delete_endpoint(EndpointName="sklearn-1")


def test_the_state_change_event_is_shaped_as_aws_documents_it(stack: LocalStack, aws) -> None:
    # Given an endpoint that came into service
    _release(aws, stack, "shape-1", {"model.json": json.dumps({"coef": [1]}).encode()})
    assert _settled(aws, "shape-1")["EndpointStatus"] == "InService"
    events = wait_until(lambda: len(_events(aws, stack, "shape-1")) == 2 and _events(aws, stack, "shape-1"), 5)

    # Then its IN_SERVICE event has every field of AWS's example, of the same types, and no other detail
    example = documented("sagemaker_endpoint_state_change.json")
    in_service = events[-1]
    assert_shaped_like(in_service, {k: v for k, v in example.items() if k != "time"})
    assert set(in_service["detail"]) == set(example["detail"])
    assert in_service["detail"]["EndpointStatus"] == "IN_SERVICE"
    assert in_service["detail"]["ProductionVariants"] == [{"DesiredWeight": 1.0, "DesiredInstanceCount": 1.0}]
    assert in_service["resources"] == [in_service["detail"]["EndpointArn"]]
    assert in_service["detail"]["LastModifiedTime"] >= in_service["detail"]["CreationTime"]
    aws("sagemaker").delete_endpoint(EndpointName="shape-1")
    assert wait_until(lambda: _state_changes(aws, stack, "shape-1")[-1:] == ["DELETING"], 5)


def test_describe_endpoint_leaves_out_an_unconfigured_data_capture(stack: LocalStack, aws) -> None:
    # Given an endpoint whose config has no DataCaptureConfig
    _release(aws, stack, "capture-1", {"model.json": json.dumps({"coef": [1]}).encode()})
    # Then DescribeEndpoint has no DataCaptureConfig at all (SageMaker SDK v3 fails on an empty one)
    assert "DataCaptureConfig" not in aws("sagemaker").describe_endpoint(EndpointName="capture-1")
    assert "DataCaptureConfig" not in _settled(aws, "capture-1")
    aws("sagemaker").delete_endpoint(EndpointName="capture-1")


def test_an_endpoint_whose_process_dies_is_failed_and_answers_at_once(stack: LocalStack, aws) -> None:
    # Given an endpoint in service
    _release(aws, stack, "dies-1", {"model.json": json.dumps({"coef": [1]}).encode()})
    assert _settled(aws, "dies-1")["EndpointStatus"] == "InService"
    pid = stack.hosting.endpoint_pid(ACCOUNT, REGION, "dies-1")

    # When its process is killed (as the OOM killer would)
    os.kill(pid, signal.SIGKILL)

    # Then the endpoint becomes Failed, saying how the container ended and where its log is
    described = wait_until(
        lambda: (d := aws("sagemaker").describe_endpoint(EndpointName="dies-1"))["EndpointStatus"] == "Failed" and d,
        10,
    )
    assert "exited unexpectedly (killed by signal SIGKILL)" in described["FailureReason"]
    assert str(stack.hosting.log_path("dies-1")) in described["FailureReason"]
    # And a FAILED state change carries the reason
    failed = wait_until(lambda: [e for e in _events(aws, stack, "dies-1") if e["detail"]["EndpointStatus"] == "FAILED"])
    assert failed[0]["detail"]["FailureReason"] == described["FailureReason"]
    # And an invocation is refused at once instead of hanging
    with pytest.raises(ClientError) as caught:
        aws("sagemaker-runtime").invoke_endpoint(EndpointName="dies-1", Body=b"[[1]]", ContentType="application/json")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "status: Failed" in caught.value.response["Error"]["Message"]
    aws("sagemaker").delete_endpoint(EndpointName="dies-1")


def test_deleting_an_endpoint_stops_its_whole_process_tree(stack: LocalStack, aws) -> None:
    # Given an endpoint whose server forked a worker that ignores SIGTERM (as gunicorn's master forks)
    _release(aws, stack, "tree-1", {"model.json": json.dumps({"coef": [1]}).encode()}, {"FORK_WORKER": "1"})
    assert _settled(aws, "tree-1")["EndpointStatus"] == "InService"
    pid = stack.hosting.endpoint_pid(ACCOUNT, REGION, "tree-1")
    tree = wait_until(lambda: len(group_of(pid)) == 2 and group_of(pid), 10)

    # When the endpoint is deleted, Then the server and its worker are gone
    aws("sagemaker").delete_endpoint(EndpointName="tree-1")
    await_exit(tree)


def test_an_endpoint_gets_a_minimal_environment_not_the_developers(
    stack: LocalStack, aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a developer shell holding credentials and other settings
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")

    # When an endpoint starts for a model with its own environment
    _release(aws, stack, "env-1", {"model.json": json.dumps({"coef": [1]}).encode()}, {"MODEL_SETTING": "on"})
    assert _settled(aws, "env-1")["EndpointStatus"] == "InService"
    pid = stack.hosting.endpoint_pid(ACCOUNT, REGION, "env-1")
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)

    # Then it sees the model's variables and SageMaker's, and nothing of the developer's
    assert env["MODEL_SETTING"] == "on"
    assert env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    assert env["SM_MODEL_DIR"].endswith("/model")
    assert not {"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "HTTPS_PROXY", "AWS_ACCESS_KEY_ID"} & set(env)
    assert set(env) <= {
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "LD_LIBRARY_PATH",
        "TMPDIR",
        "MODEL_SETTING",
        "SM_MODEL_DIR",
        "SAGEMAKER_BIND_TO_HOST",
        "SAGEMAKER_BIND_TO_PORT",
        "SAGEMAKER_MODEL_SERVER_WORKERS",
        "DROPSHIP_INSTALL_REQUIREMENTS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    }
    aws("sagemaker").delete_endpoint(EndpointName="env-1")


def test_the_model_chooses_its_number_of_server_workers(tmp_path: Path) -> None:
    common = {"model_dir": tmp_path / "model", "home": tmp_path, "port": 8080, "region": "us-east-1"}
    assert endpoint_environment({}, **common)["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    assert (
        endpoint_environment({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, **common)["SAGEMAKER_MODEL_SERVER_WORKERS"] == "3"
    )
    # SageMaker's own variables are the host's, whatever the model says
    assert endpoint_environment({"SAGEMAKER_BIND_TO_PORT": "1"}, **common)["SAGEMAKER_BIND_TO_PORT"] == "8080"


def test_a_start_up_delay_keeps_the_endpoint_creating(stack: LocalStack, aws, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given endpoints are set to take at least 1.5 s to start (DROPSHIP_LOCAL_ENDPOINT_STARTUP_DELAY)
    monkeypatch.setattr(stack.hosting, "startup_delay_s", 1.5)
    started = time.monotonic()
    _release(aws, stack, "slow-1", {"model.json": json.dumps({"coef": [1]}).encode()})
    # Then no process runs during the delay, and the endpoint comes into service after it
    assert stack.hosting.endpoint_pid(ACCOUNT, REGION, "slow-1") is None
    assert _settled(aws, "slow-1")["EndpointStatus"] == "InService"
    assert time.monotonic() - started >= 1.5
    aws("sagemaker").delete_endpoint(EndpointName="slow-1")


@pytest.mark.parametrize(
    ("status", "spelled"),
    [("InService", "IN_SERVICE"), ("Creating", "CREATING"), ("Failed", "FAILED"), ("OutOfService", "OUT_OF_SERVICE")],
)
def test_event_statuses_are_spelled_as_in_the_event(status: str, spelled: str) -> None:
    assert event_status(status) == spelled


@pytest.fixture
def real_serve(stack: LocalStack) -> Iterator[None]:
    """Endpoints run the project's real container/serve (the sample project's is a stand-in)."""
    original = stack.hosting.serve_command
    stack.hosting.serve_command = [sys.executable, str(REAL_SERVE)]
    try:
        yield
    finally:
        stack.hosting.serve_command = original


def _this_start(stack: LocalStack, name: str) -> list[dict]:
    """The structured lines the endpoint's latest process wrote."""
    text = stack.hosting.log_path(name).read_text()
    latest = text[text.rindex("--- ") :].splitlines()[1:]
    return [json.loads(line) for line in latest if line.startswith("{")]


def _interpreter(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def test_a_model_s_requirements_install_once_into_an_environment_of_its_own(stack: LocalStack, aws, real_serve) -> None:
    # Given a script importing a package neither the image nor the developer's environment has
    files = {f"code/{name}": (INFLECTION / name).read_bytes() for name in ("inference.py", "requirements.txt")}
    assert importlib.util.find_spec("inflection") is None

    # When an endpoint is created for it, Then it comes into service and serves with the package
    _release(aws, stack, "reqs-1", files)
    assert _settled(aws, "reqs-1")["EndpointStatus"] == "InService", _settled(aws, "reqs-1").get("FailureReason")
    reply = aws("sagemaker-runtime").invoke_endpoint(
        EndpointName="reqs-1", Body=json.dumps({"words": ["device_type"]}), ContentType="application/json"
    )
    assert json.loads(reply["Body"].read()) == {"camelized": ["DeviceType"]}
    # installed by serve, only what was missing, into an environment under the stack's cache
    [install] = [line for line in _this_start(stack, "reqs-1") if line.get("event") == "requirements_install"]
    assert install["unsatisfied"] == ["inflection==0.5.1"]
    python = _interpreter(stack.hosting.endpoint_pid(ACCOUNT, REGION, "reqs-1"))
    assert python.startswith(str(stack.run_dir / "cache" / "environments"))
    # never into the developer's environment
    assert importlib.util.find_spec("inflection") is None

    # When a second endpoint has the same requirements, Then it reuses the environment: no pip run
    _release(aws, stack, "reqs-2", files)
    assert _settled(aws, "reqs-2")["EndpointStatus"] == "InService"
    events = [line.get("event") for line in _this_start(stack, "reqs-2")]
    assert "requirements_satisfied" in events and "requirements_install" not in events
    assert _interpreter(stack.hosting.endpoint_pid(ACCOUNT, REGION, "reqs-2")) == python
    for name in ("reqs-1", "reqs-2"):
        aws("sagemaker").delete_endpoint(EndpointName=name)


FAILING = {
    "model_fn-raises": (
        {"code/inference.py": b"def model_fn(model_dir):\n    raise RuntimeError('weights.bin is missing')\n"},
        r"model_fn failed: RuntimeError: weights\.bin is missing",
    ),
    "missing-import": (
        {"code/inference.py": b"import featurizer\n\n\ndef model_fn(model_dir):\n    return None\n"},
        r"importing /.+/code/inference\.py failed: ModuleNotFoundError: No module named 'featurizer'",
    ),
    "bad-requirement": (
        {"code/requirements.txt": f"{MISSING_PACKAGE}\n".encode()},
        rf"ERROR: Could not find a version that satisfies the requirement {MISSING_PACKAGE}.*"
        r"\(pip install -r code/requirements\.txt failed\)",
    ),
    "refused-index-url": (
        {"code/requirements.txt": b"--index-url https://packages.example.invalid/simple\npandas\n"},
        r"code/requirements\.txt line 1: --index-url is refused because it changes where packages come from; "
        r"the stack's AllowPackageSources parameter allows it",
    ),
}


@pytest.mark.parametrize(("files", "first_line"), FAILING.values(), ids=FAILING.keys())
def test_a_failed_start_s_reason_leads_with_its_cause(
    stack: LocalStack, aws, real_serve, files: dict[str, bytes], first_line: str
) -> None:
    import re

    # When a model fails to start in the real container
    name = f"cause-{list(FAILING.values()).index((files, first_line))}"
    _release(aws, stack, name, {"model.joblib": b"", **files})
    described = _settled(aws, name)

    # Then the endpoint is Failed and its reason starts with the cause, then what happened, then the tail
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    cause, happened, *_ = reason.split("\n")
    assert re.fullmatch(first_line, cause), reason
    assert happened.startswith(EXITED) and str(stack.hosting.log_path(name)) in happened
    assert len(reason) <= 1024
    aws("sagemaker").delete_endpoint(EndpointName=name)


def test_the_requirements_file_is_the_one_beside_the_program(tmp_path: Path) -> None:
    for name in ("code/requirements.txt", "code/src/requirements.txt", "requirements.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("pandas\n")
    assert requirements_file(tmp_path, {}) == tmp_path / "code" / "requirements.txt"
    assert requirements_file(tmp_path, {"SAGEMAKER_PROGRAM": "src/serve.py"}) == tmp_path / "code/src/requirements.txt"
    # code outside the model is never installed locally: it would go into the developer's environment
    assert requirements_file(tmp_path, {"SAGEMAKER_PROGRAM": "../serve.py"}) is None
    assert requirements_file(tmp_path, {"SAGEMAKER_PROGRAM": "/opt/ml/code/serve.py"}) is None
    assert requirements_file(tmp_path / "elsewhere", {}) is None
    env = endpoint_environment({}, model_dir=tmp_path, home=tmp_path, port=8080, region="us-east-1")
    assert env["DROPSHIP_INSTALL_REQUIREMENTS"] == "0"
