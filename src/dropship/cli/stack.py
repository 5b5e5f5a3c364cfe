"""Where the command line talks to: real AWS or the local stack, the AWS clients, the stack's outputs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from dropship.alias import AliasStore
from dropship.artifact import ArtifactLimits
from dropship.aws import error_code
from dropship.cli.errors import CliError
from dropship.history import ReleaseTable
from dropship.local import paths
from dropship.notify import Notifier
from dropship.watch import Watches

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 4566
LOCAL_ENDPOINT_URL = f"http://{LOCAL_HOST}:{LOCAL_PORT}"  # --local without DROPSHIP_LOCAL_PORT
LOCAL_REGION = "us-east-1"
# The local stack accepts any credentials; these are only used when the credential chain has none.
_LOCAL_ACCESS_KEY = "dropship-local"
DEFAULT_STACK_NAME = "dropship"
ENDPOINT_ENV = "DROPSHIP_ENDPOINT_URL"
LOCAL_PORT_ENV = paths.PORT_ENV
STACK_NAME_ENV = "DROPSHIP_STACK_NAME"

OUTPUT_NAMES = ("ModelBucketName", "ReleaseStateMachineArn", "EventBusName", "ReleasesTableName", "AliasPrefix")

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=10,
    read_timeout=70,
    user_agent_extra="dropship-cli/0.1",
)
# The first call to an endpoint fails fast when nothing listens there.
_PROBE_CONFIG = _CONFIG.merge(Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5))


def local_port() -> int:
    """The local stack's port: ``$DROPSHIP_LOCAL_PORT``, else 4566."""
    text = os.environ.get(LOCAL_PORT_ENV, "").strip()
    if not text:
        return LOCAL_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise CliError(f"{LOCAL_PORT_ENV}={text!r} is not a port number (1-65535)")
    return int(text)


def local_endpoint_url() -> str:
    """What ``--local`` means: ``http://127.0.0.1:$DROPSHIP_LOCAL_PORT`` (default port 4566)."""
    return f"http://{LOCAL_HOST}:{local_port()}"


@dataclass(frozen=True)
class Target:
    """Which AWS the commands talk to."""

    endpoint_url: str | None
    region: str | None
    stack_name: str

    @property
    def is_local(self) -> bool:
        return self.endpoint_url is not None

    @classmethod
    def from_options(cls, local: bool = False, region: str | None = None, stack_name: str | None = None) -> Target:
        # An explicit URL wins over --local: it names exactly the stack to talk to.
        endpoint = os.environ.get(ENDPOINT_ENV) or (local_endpoint_url() if local else None)
        if endpoint is not None and region is None:
            region = LOCAL_REGION
        return cls(
            endpoint_url=endpoint,
            region=region,
            stack_name=stack_name or os.environ.get(STACK_NAME_ENV) or DEFAULT_STACK_NAME,
        )


@dataclass(frozen=True)
class StackOutputs:
    model_bucket: str
    state_machine_arn: str
    event_bus: str
    table_name: str
    alias_prefix: str

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> StackOutputs:
        return cls(
            model_bucket=outputs["ModelBucketName"],
            state_machine_arn=outputs["ReleaseStateMachineArn"],
            event_bus=outputs["EventBusName"],
            table_name=outputs["ReleasesTableName"],
            alias_prefix=outputs["AliasPrefix"],
        )


def new_session(target: Target) -> boto3.Session:
    """A boto3 session for the target; for an endpoint URL, dummy credentials when the chain has none."""
    session = boto3.Session(region_name=target.region)
    if target.is_local and session.get_credentials() is None:
        session = boto3.Session(
            region_name=target.region,
            aws_access_key_id=_LOCAL_ACCESS_KEY,
            aws_secret_access_key=_LOCAL_ACCESS_KEY,
        )
    return session


def unreachable_message(target: Target, exc: Exception) -> str:
    if target.is_local:
        return f"cannot reach {target.endpoint_url}: is `dropship local up` running?"
    return f"cannot reach AWS ({exc}): check your network connection and region"


class Stack:
    """The deployed dropship stack: clients for its account and the resources named by its outputs."""

    def __init__(self, target: Target, session: boto3.Session | None = None) -> None:
        self.target = target
        self.session = session or new_session(target)
        if not self.target.is_local and self.session.get_credentials() is None:
            raise CliError(
                "no AWS credentials found: configure them (`aws configure`, AWS_PROFILE or AWS_ACCESS_KEY_ID), "
                "or use --local for the local stack"
            )
        if self.region is None:
            raise CliError("no AWS region: pass --region or set AWS_REGION (or use --local)")
        self._clients: dict[str, Any] = {}

    @property
    def region(self) -> str | None:
        return self.session.region_name

    def client(self, service: str, probe: bool = False) -> Any:
        if probe:
            return self._new_client(service, _PROBE_CONFIG)
        if service not in self._clients:
            self._clients[service] = self._new_client(service, _CONFIG)
        return self._clients[service]

    def _new_client(self, service: str, config: Config) -> Any:
        try:
            return self.session.client(  # type: ignore[call-overload]
                service, endpoint_url=self.target.endpoint_url, config=config
            )
        except NoRegionError as exc:
            raise CliError("no AWS region: pass --region or set AWS_REGION (or use --local)") from exc

    @cached_property
    def description(self) -> dict[str, Any]:
        """The stack as CloudFormation describes it (``DescribeStacks``), read once."""
        name = self.target.stack_name
        try:
            stacks = self.client("cloudformation", probe=True).describe_stacks(StackName=name)["Stacks"]
        except NoCredentialsError as exc:
            raise CliError("no AWS credentials found: configure them, or use --local for the local stack") from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise CliError(unreachable_message(self.target, exc)) from exc
        except ClientError as exc:
            if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                raise CliError(self._not_found_message()) from exc
            raise
        if not stacks:
            raise CliError(self._not_found_message())
        return dict(stacks[0])

    @cached_property
    def outputs(self) -> StackOutputs:
        stack = self.description
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        missing = [key for key in OUTPUT_NAMES if key not in outputs]
        if missing:
            raise CliError(
                f"stack {self.target.stack_name!r} ({stack.get('StackStatus', 'unknown status')}) has no output "
                f"{', '.join(missing)}: is it a dropship stack, and has it finished deploying?"
            )
        return StackOutputs.from_outputs(outputs)

    @property
    def parameters(self) -> dict[str, str]:
        """The stack's parameter values, by name (an SSM-typed parameter's resolved value)."""
        return {
            p["ParameterKey"]: p.get("ResolvedValue") or p.get("ParameterValue", "")
            for p in self.description.get("Parameters", [])
        }

    def artifact_limits(self) -> ArtifactLimits:
        """The limits Validate Artifact applies: the stack's parameters, else the template's defaults."""
        parameters = self.parameters
        values: dict[str, int] = {}
        for field, info in ArtifactLimits.model_fields.items():
            text = parameters.get(str(info.description), "").strip()
            if text.isdigit() and int(text) > 0:
                values[field] = int(text)
        return ArtifactLimits(**values)

    def functions(self) -> dict[str, str]:
        """The stack's Lambda functions: logical id -> function name (``ListStackResources``)."""
        found: dict[str, str] = {}
        paginator = self.client("cloudformation").get_paginator("list_stack_resources")
        for page in paginator.paginate(StackName=self.target.stack_name):
            for resource in page.get("StackResourceSummaries", []):
                if resource.get("ResourceType") == "AWS::Lambda::Function" and resource.get("PhysicalResourceId"):
                    found[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
        return found

    def _not_found_message(self) -> str:
        return (
            f"stack {self.target.stack_name!r} not found in {self.region}: deploy it with `sam deploy --guided`, "
            "or start the local stack with `dropship local up`"
        )

    # -- the domain objects of this stack --------------------------------------------------------

    def table(self) -> ReleaseTable:
        return ReleaseTable(self.client("dynamodb"), self.outputs.table_name)

    def aliases(self) -> AliasStore:
        return AliasStore(self.client("ssm"), self.outputs.alias_prefix)

    def notifier(self) -> Notifier:
        return Notifier(self.client("events"), self.outputs.event_bus)

    def watches(self) -> Watches:
        return Watches(
            self.client("dynamodb"), self.outputs.table_name, self.client("cloudwatch"), self.client("stepfunctions")
        )
