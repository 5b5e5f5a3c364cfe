"""SageMaker endpoints as real local processes running the inference container."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from dropship.local import LocalStack
from tests.local.conftest import wait_until
from tests.local.sample_project import model_tarball

ACCOUNT, REGION = "123456789012", "us-east-1"
REAL_SERVE = Path(__file__).resolve().parents[2] / "container" / "serve"


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


def _state_changes(aws, stack: LocalStack, name: str) -> list[str]:
    sqs = aws("sqs")
    statuses: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=stack.outputs["EndpointEventsUrl"], MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return statuses
        for message in messages:
            event = json.loads(message["Body"])
            if event["detail"]["EndpointName"] == name:
                statuses.append(event["detail"]["EndpointStatus"])
            sqs.delete_message(QueueUrl=stack.outputs["EndpointEventsUrl"], ReceiptHandle=message["ReceiptHandle"])


def test_an_endpoint_goes_creating_then_in_service_and_serves_predictions(stack: LocalStack, aws) -> None:
    # When an endpoint is created for a model
    _release(aws, stack, "linear-1", {"model.json": json.dumps({"coef": [1, 2]}).encode()})

    # Then it is Creating at first, then InService with a real process behind it
    assert aws("sagemaker").describe_endpoint(EndpointName="linear-1")["EndpointStatus"] == "Creating"
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

    # And state changes were put on the default bus
    assert wait_until(lambda: _state_changes(aws, stack, "linear-1"), 5) == ["Creating", "InService"]

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
    assert "exited with code 3" in described["FailureReason"]
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
