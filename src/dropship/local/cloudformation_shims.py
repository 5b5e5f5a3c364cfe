"""Where moto's CloudFormation falls short of what the template needs, minimal fixes.

Found in moto 5.2.5 (each one checked against its source):

- ``AWS::StepFunctions::StateMachine`` is created in the plain Step Functions backend, which the API
  does not use once execution is switched on (a separate "parser" backend): the stack's state machine
  would be invisible and never run. ``DefinitionSubstitutions``, ``LoggingConfiguration`` and
  ``TracingConfiguration`` are ignored. -> created in the executing backend, substitutions applied.
- ``AWS::S3::Bucket`` only applies ``BucketEncryption`` and ``Tags``. -> ``NotificationConfiguration``
  (EventBridge, the release trigger) and ``VersioningConfiguration`` are applied too.
- ``AWS::S3::BucketPolicy`` is not supported. -> accepted but not enforced: moto's S3 policy check
  ignores ``Condition`` semantics (a statement whose condition cannot be evaluated counts as DENIED),
  so the usual "deny insecure transport" statement would deny every local request.
- ``AWS::DynamoDB::Table`` ignores ``TimeToLiveSpecification``. -> applied (moto never expires items).
- Any other unsupported type is skipped by moto with only a warning. -> recorded in ``skipped`` and
  logged once, so a missing piece is visible rather than silent.
- ``Ref`` to an ``AWS::Events::EventBus``, ``AWS::Lambda::LayerVersion`` or ``AWS::Events::Archive``
  yields moto's Python object (no ``physical_resource_id``). -> the name or ARN
  CloudFormation returns.
- ``AWS::Lambda::Function`` drops ``Layers``. -> applied, so ``GetFunction`` lists them and the local
  runtime knows which layer directories to put on the path.
- A resource moto fails to create surfaces as a bare exception. -> re-raised as a CloudFormation
  ``ValidationError`` naming the logical id and type.
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import ExitStack
from typing import Any
from unittest import mock

log = logging.getLogger(__name__)

_SUBSTITUTION = re.compile(r"\$\{([^}]+)\}")


def substitute_definition(definition: str, substitutions: dict[str, Any] | None) -> str:
    """Apply ``DefinitionSubstitutions`` as CloudFormation does: only the keys given are replaced."""
    if not substitutions:
        return definition

    def repl(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in substitutions:
            return match.group(0)
        value = substitutions[key]
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return _SUBSTITUTION.sub(repl, definition)


def _definition_string(properties: dict[str, Any]) -> str:
    definition = properties.get("DefinitionString")
    if definition is None and "Definition" in properties:
        definition = json.dumps(properties["Definition"])
    return substitute_definition(str(definition or ""), properties.get("DefinitionSubstitutions"))


def install(patches: ExitStack, skipped: set[str]) -> None:
    """Install the CloudFormation fixes. ``skipped`` collects resource types moto cannot create."""
    from moto.cloudformation import parsing
    from moto.cloudformation.exceptions import ValidationError
    from moto.core.common_models import CloudFormationModel
    from moto.dynamodb.models.table import Table
    from moto.s3.models import FakeBucket, s3_backends
    from moto.stepfunctions.models import StateMachine
    from moto.stepfunctions.responses import get_backend as sfn_backend
    from moto.utilities.utils import get_partition

    # --- Step Functions: the executing backend, with substitutions -------------------------------
    def sm_create(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        props = cloudformation_json["Properties"]
        return sfn_backend(account_id, region_name).create_state_machine(
            name=props.get("StateMachineName", resource_name),
            definition=_definition_string(props),
            roleArn=props.get("RoleArn", ""),
            tags=[{"key": t["Key"], "value": t["Value"]} for t in props.get("Tags", [])],
            loggingConfiguration=_lower_first(props.get("LoggingConfiguration")),
            tracingConfiguration=_lower_first(props.get("TracingConfiguration")),
            sm_type=props.get("StateMachineType", "STANDARD"),
        )

    def sm_delete(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str) -> None:
        sfn_backend(account_id, region_name).delete_state_machine(resource_name)

    def sm_update(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        props = cloudformation_json.get("Properties", {})
        backend = sfn_backend(account_id, region_name)
        backend.update_state_machine(
            original_resource.arn, definition=_definition_string(props), role_arn=props.get("RoleArn")
        )
        return backend.describe_state_machine(original_resource.arn)

    patches.enter_context(mock.patch.object(StateMachine, "create_from_cloudformation_json", classmethod(sm_create)))
    patches.enter_context(mock.patch.object(StateMachine, "delete_from_cloudformation_json", classmethod(sm_delete)))
    patches.enter_context(mock.patch.object(StateMachine, "update_from_cloudformation_json", classmethod(sm_update)))

    # --- S3 buckets: notifications and versioning -------------------------------------------------
    original_bucket_create = FakeBucket.create_from_cloudformation_json

    def bucket_create(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        bucket = original_bucket_create(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        props = cloudformation_json.get("Properties", {})
        notification = props.get("NotificationConfiguration") or {}
        if "EventBridgeConfiguration" in notification:
            eventbridge = notification["EventBridgeConfiguration"]
            if eventbridge.get("EventBridgeEnabled", True) in (True, "true", "True"):
                bucket.set_notification_configuration({"EventBridgeConfiguration": {}})
        versioning = (props.get("VersioningConfiguration") or {}).get("Status")
        if versioning:
            s3_backends[account_id][get_partition(region_name)].put_bucket_versioning(bucket.name, versioning)
        return bucket

    patches.enter_context(mock.patch.object(FakeBucket, "create_from_cloudformation_json", classmethod(bucket_create)))

    # --- DynamoDB: TTL ----------------------------------------------------------------------------
    original_table_create = Table.create_from_cloudformation_json

    def table_create(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        table = original_table_create(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        ttl = cloudformation_json.get("Properties", {}).get("TimeToLiveSpecification") or {}
        if ttl.get("Enabled") in (True, "true", "True") and ttl.get("AttributeName"):
            table.ttl = {"TimeToLiveStatus": "ENABLED", "AttributeName": ttl["AttributeName"]}
        return table

    patches.enter_context(mock.patch.object(Table, "create_from_cloudformation_json", classmethod(table_create)))

    # --- Ref values CloudFormation returns -------------------------------------------------------
    from moto.awslambda.models import LambdaFunction, LayerVersion
    from moto.events.models import Archive, EventBus

    for model, ref in (
        (EventBus, lambda self: self.name),
        (Archive, lambda self: self.name),
        (LayerVersion, lambda self: self.arn),
    ):
        if "physical_resource_id" not in model.__dict__:
            patches.enter_context(mock.patch.object(model, "physical_resource_id", property(ref), create=True))

    # --- Lambda functions: layers -----------------------------------------------------------------
    original_function_create = LambdaFunction.create_from_cloudformation_json

    def function_create(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        fn = original_function_create(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        layers = [str(arn) for arn in cloudformation_json.get("Properties", {}).get("Layers") or []]
        if layers:
            fn.layers = fn._get_layers_data(layers)
        return fn

    patches.enter_context(
        mock.patch.object(LambdaFunction, "create_from_cloudformation_json", classmethod(function_create))
    )

    # --- S3 bucket policies -----------------------------------------------------------------------
    _register_bucket_policy_model(CloudFormationModel)
    # moto discovers models once per process (three lru_caches over the subclasses of CloudFormationModel):
    # after an earlier moto CloudFormation call, the new model is invisible until every one is cleared.
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()

    # --- Name the resource when moto fails, and record what it skips ------------------------------
    original_parse_and_create = parsing.parse_and_create_resource

    def parse_and_create_resource(
        logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str, region_name: str
    ) -> Any:
        resource_type = resource_json.get("Type", "")
        if (
            not resource_type.startswith("Custom::")
            and resource_type not in parsing.NULL_MODELS
            and resource_type not in parsing.get_model_map()
            and resource_type not in skipped
        ):
            skipped.add(resource_type)
            log.warning("local stack: %s (%s) is not emulated; skipped", logical_id, resource_type)
        try:
            return original_parse_and_create(logical_id, resource_json, resources_map, account_id, region_name)
        except ValidationError:
            raise
        except Exception as exc:
            raise ValidationError(
                message=f"Resource {logical_id} ({resource_type}) could not be created locally: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    patches.enter_context(mock.patch.object(parsing, "parse_and_create_resource", parse_and_create_resource))


def _lower_first(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """CloudFormation's ``Level``/``Enabled`` keys -> the API's ``level``/``enabled`` shapes."""
    if not config:
        return None

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {k[:1].lower() + k[1:]: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    converted = convert(config)
    return converted if isinstance(converted, dict) else None


_BUCKET_POLICY_MODEL: type | None = None


def _register_bucket_policy_model(base: type) -> None:
    """Define (once per process) an accepted-but-not-enforced ``AWS::S3::BucketPolicy`` model.

    moto discovers models as subclasses of ``CloudFormationModel``; a class cannot be unregistered,
    so it is defined once and stays harmless after the stack stops.
    """
    global _BUCKET_POLICY_MODEL
    if _BUCKET_POLICY_MODEL is not None:
        return

    class LocalBucketPolicy(base):
        def __init__(self, bucket_name: str) -> None:
            self.bucket_name = bucket_name

        @property
        def physical_resource_id(self) -> str:
            return self.bucket_name

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::S3::BucketPolicy"

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            return cls(str(cloudformation_json["Properties"]["Bucket"]))

        @classmethod
        def delete_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            return None

    _BUCKET_POLICY_MODEL = LocalBucketPolicy
