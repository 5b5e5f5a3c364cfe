"""The AWS clients a function uses, each built once per execution environment (warm invocations reuse
it) and only when first needed, never at import time. Typed with boto3-stubs."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from dropship.aws import client

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_stepfunctions import SFNClient


@cache
def autoscaling() -> ApplicationAutoScalingClient:
    return client("application-autoscaling")


@cache
def cloudwatch() -> CloudWatchClient:
    return client("cloudwatch")


@cache
def dynamodb() -> DynamoDBClient:
    return client("dynamodb")


@cache
def events() -> EventBridgeClient:
    return client("events")


@cache
def s3() -> S3Client:
    return client("s3")


@cache
def sagemaker() -> SageMakerClient:
    return client("sagemaker")


@cache
def sagemaker_runtime() -> SageMakerRuntimeClient:
    return client("sagemaker-runtime")


@cache
def ssm() -> SSMClient:
    return client("ssm")


@cache
def stepfunctions() -> SFNClient:
    return client("stepfunctions")
