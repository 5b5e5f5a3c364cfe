"""SageMaker creates that survive Lambda retries, and transient AWS failures made retryable by name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.retries import standard
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from dropship import aws, errors
from dropship.aws import is_transient, transient_as_retryable
from dropship.endpoints import Deletion, Endpoints
from dropship.errors import EndpointFailedError, EndpointTimeoutError, TransientAwsError
from dropship.release import Deployment, Release
from dropship.waits import EndpointStatus, endpoint_outcome, normalise_status

ARN = "arn:aws:states:us-east-1:123456789012:execution:dropship-Release:abc"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"


def release(**changes: object) -> Release:
    now = datetime.now(UTC)
    base = dict(
        model="churn", version="3", alias="live", execution_arn=ARN, bucket="b", key="models/churn/3/model.tar.gz",
        uploaded_at=now, upload_order="2026-11-26T00:00:00Z#01#k", started_at=now, sha256="a" * 64,
        compressed_bytes=1, uncompressed_bytes=1,
        artifact_key="released/churn/" + "a" * 64 + "/model.tar.gz",
        resource_name="churn-3-12345678", smoke_test=[], retain=1, poll_interval_s=1, endpoint_timeout_s=60,
        lock_timeout_s=60, deployment=Deployment(image_uri="img:1", instance_type="ml.m5.large",
                                                 initial_instance_count=1, tags={"team": "risk"}),
    )  # fmt: skip
    return Release.model_validate({**base, **changes})


@mock_aws
def test_a_retried_create_finds_its_own_resources() -> None:
    # Given a release whose model, config and endpoint were created by a first attempt
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    endpoints, ours = Endpoints(sagemaker), release()
    for _ in range(2):  # When every create runs again (a Lambda retry)
        endpoints.create_model(ours, ROLE)
        endpoints.create_endpoint_config(ours)
        endpoints.create_endpoint(ours)
    # Then each exists once, tagged with the stack and the release
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["churn-3-12345678"]
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == ["churn-3-12345678"]
    arn = sagemaker.describe_model(ModelName="churn-3-12345678")["ModelArn"]
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    assert tags == {"team": "risk", "dropship:stack": "dropship", "dropship:model": "churn",
                    "dropship:version": "3", "dropship:execution": "abc"}  # fmt: skip
    # And deleting them twice is fine: the second time nothing is left to delete
    assert endpoints.delete("churn-3-12345678") == Deletion(deleted=["endpoint", "endpoint-config", "model"])
    assert endpoints.delete("churn-3-12345678") == Deletion()


def test_an_endpoint_sagemaker_is_still_creating_is_not_deleted_yet() -> None:
    # Given an endpoint in Creating (SageMaker refuses DeleteEndpoint then)
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(sagemaker)
    described = {
        "EndpointName": "churn-3-12345678",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/churn-3-12345678",
        "EndpointStatus": "Creating",
        "CreationTime": datetime.now(UTC),
        "LastModifiedTime": datetime.now(UTC),
    }
    stubber.add_response("describe_endpoint", described, {"EndpointName": "churn-3-12345678"})
    # When it is deleted, Then nothing is attempted and the status that kept it is reported
    with stubber:
        assert Endpoints(sagemaker).delete("churn-3-12345678") == Deletion(busy="Creating")


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "age_s", "expected"),
    [
        ("Creating", 30, None),
        ("InService", 3600, None),
        ("Creating", 61, EndpointTimeoutError),
        ("Failed", 1, EndpointFailedError),
    ],
)
def test_endpoint_outcome(status: EndpointStatus, age_s: int, expected: type[Exception] | None) -> None:
    outcome = endpoint_outcome("churn-3-1", status, "ping failed", datetime.now(UTC) - timedelta(seconds=age_s), 60)
    assert outcome is None if expected is None else isinstance(outcome, expected)


def test_a_failed_endpoint_leads_with_sagemakers_reason() -> None:
    outcome = endpoint_outcome("churn-3-1", "Failed", "ModuleNotFoundError: No module named 'pandas'", None, 60)
    assert str(outcome).startswith("ModuleNotFoundError: No module named 'pandas' (endpoint churn-3-1 did not start")


def test_a_slow_endpoint_says_which_parameter_to_raise() -> None:
    outcome = endpoint_outcome("churn-3-1", "Creating", None, datetime.now(UTC) - timedelta(seconds=61), 60)
    assert "still Creating after 61 s (EndpointTimeoutSeconds is 60)" in str(outcome)


@pytest.mark.parametrize(
    ("spelling", "status"),
    [("IN_SERVICE", "InService"), ("InService", "InService"), ("FAILED", "Failed"), ("CREATING", "Creating"),
     ("SYSTEM_UPDATING", "SystemUpdating"), ("OUT_OF_SERVICE", "OutOfService"), ("nonsense", None)],
)  # fmt: skip
def test_event_and_api_spellings_of_a_status_are_one(spelling: str, status: str | None) -> None:
    assert normalise_status(spelling) == status


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    "error",
    [
        client_error("ThrottlingException", 400),
        client_error("ProvisionedThroughputExceededException", 400),
        client_error("ServiceUnavailable", 503),
        client_error("Whatever", 500),
        client_error("RequestTimeout", 400),
        client_error("Whatever", 429),
        EndpointConnectionError(endpoint_url="https://sagemaker.us-east-1.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://sagemaker.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://sagemaker.us-east-1.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://sagemaker.us-east-1.amazonaws.com"),
    ],
)
def test_transient_failures_become_retryable_by_name(error: Exception) -> None:
    with pytest.raises(TransientAwsError), transient_as_retryable():
        raise error


@pytest.mark.parametrize(
    "error",
    [
        client_error("AccessDeniedException", 400),
        client_error("ValidationException", 400),
        client_error("ResourceLimitExceeded", 400),
        client_error("NotImplemented", 501),
        NoCredentialsError(),
        ParamValidationError(report="bad"),
        ValueError("not an AWS failure"),
    ],
)
def test_other_failures_pass_through_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as raised, transient_as_retryable():
        raise error
    assert raised.value is error


# The transient list is botocore's own (standard retry mode, which aws.CLIENT_CONFIG sets) -------------


def test_transient_codes_are_botocores_standard_retry_lists() -> None:
    # botocore keeps these as class attributes of its standard-mode checkers; if it adds a code, so must we.
    assert set(standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES) == aws.THROTTLING_ERROR_CODES
    assert set(standard.TransientRetryableChecker._TRANSIENT_ERROR_CODES) == aws.TRANSIENT_ERROR_CODES
    assert set(standard.TransientRetryableChecker._TRANSIENT_STATUS_CODES) == aws.TRANSIENT_STATUS_CODES
    assert set(standard.ThrottlingStatusCodeChecker._THROTTLING_STATUS_CODES) == aws.THROTTLING_STATUS_CODES
    assert set(aws.TRANSIENT_EXCEPTIONS) == set(standard.TransientRetryableChecker._TRANSIENT_EXCEPTION_CLS)
    assert aws.CLIENT_CONFIG.retries == {"mode": "standard", "max_attempts": 5}


# botocore's checkers that do not depend on an operation's modeled errors.
BOTOCORE_GENERIC = standard.OrRetryChecker(
    [standard.TransientRetryableChecker(), standard.ThrottledRetryableChecker(), standard.ThrottlingStatusCodeChecker()]
)
KNOWN_CODES = sorted(
    standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES
    + standard.TransientRetryableChecker._TRANSIENT_ERROR_CODES
    + ["AccessDeniedException", "ValidationException", "ServiceUnavailable", "InternalFailure", "NoSuchKey"]
)


@given(
    code=st.sampled_from(KNOWN_CODES) | st.text(max_size=30),
    status=st.sampled_from([200, 400, 403, 404, 409, 429, 500, 501, 502, 503, 504, 509]) | st.integers(100, 599),
)
def test_a_service_error_is_transient_exactly_when_botocore_would_retry_it(code: str, status: int) -> None:
    error = client_error(code, status)
    context = standard.RetryContext(
        attempt_number=1,
        parsed_response=error.response,
        http_response=AWSResponse("https://sagemaker.us-east-1.amazonaws.com/", status, {}, None),
    )
    assert is_transient(error) is BOTOCORE_GENERIC.is_retryable(context)


# Error codes are the contract's, one per exception class ------------------------------------------------

CONTRACT_CODES = (  # CONTRACT.md section 2, in its order
    "InvalidKey",
    "InvalidManifest",
    "InvalidArtifact",
    "ArtifactTooLarge",
    "UnsafeArtifact",
    "ImageNotAllowed",
    "EndpointFailed",
    "EndpointTimeout",
    "SmokeTestFailed",
    "AliasConflict",
    "AlarmTriggered",
    "Aborted",
    "InternalError",
)


def test_error_codes_are_the_contracts_in_its_order_read_from_the_classes() -> None:
    assert errors.ERROR_CODES == CONTRACT_CODES
    classes = errors.DropshipError.__subclasses__()
    assert tuple(cls.code for cls in classes) == CONTRACT_CODES
    for cls in classes:
        assert cls.__name__ in (cls.code + "Error", "InternalError")
        assert errors.code_for(cls.__name__) == cls.code
    assert errors.AbortedError.code == "Aborted"
    assert errors.AlarmTriggeredError.code == "AlarmTriggered"
