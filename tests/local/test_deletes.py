"""DeleteEndpoint as SageMaker answers it while an endpoint is still being created."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from dropship.local import LocalStack
from tests.local.helpers import in_service, start_endpoint


def test_an_endpoint_still_creating_cannot_be_deleted(stack: LocalStack, aws, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an endpoint that takes a moment to start (DROPSHIP_LOCAL_ENDPOINT_STARTUP_DELAY)
    monkeypatch.setattr(stack.hosting, "startup_delay_s", 1.0)
    start_endpoint(aws, stack, "busy-1")
    sagemaker = aws("sagemaker")
    arn = sagemaker.describe_endpoint(EndpointName="busy-1")["EndpointArn"]

    # When it is deleted while Creating, Then SageMaker's error comes back and nothing changes
    with pytest.raises(ClientError) as caught:
        sagemaker.delete_endpoint(EndpointName="busy-1")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["Error"]["Message"] == f'Cannot update in-progress endpoint "{arn}".'
    assert sagemaker.describe_endpoint(EndpointName="busy-1")["EndpointStatus"] == "Creating"

    # And once it has settled, it can be deleted
    in_service(aws, "busy-1")
    sagemaker.delete_endpoint(EndpointName="busy-1")
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName="busy-1")
