"""Application Auto Scaling of SageMaker variants, recorded as AWS records it.

moto 5.2.5 records ``RegisterScalableTarget``, ``PutScalingPolicy`` and ``DeregisterScalableTarget`` for
ServiceNamespace ``sagemaker``, ResourceId ``endpoint/<name>/variant/<variant>`` and ScalableDimension
``sagemaker:variant:DesiredInstanceCount``, visible through ``DescribeScalableTargets`` and
``DescribeScalingPolicies``. Where it differs from AWS (each checked against its source):

- ``PutScalingPolicy`` for a target that is not registered is accepted. AWS: "You cannot create a scaling policy
  until you have registered the resource as a scalable target" -> ``ObjectNotFoundException`` "No scalable target
  registered for service namespace: ..., resource ID: ..., scalable dimension: ...".
- ``DeregisterScalableTarget`` keeps the target's scaling policies (and their alarms). AWS: "Deregistering a
  scalable target deletes the scaling policies and the scheduled actions that are associated with it." -> deleted.
- Deregistering a target that is not registered is a ``ValidationException``; AWS: ``ObjectNotFoundException``
  "No scalable target found for service namespace: ..., resource ID: ..., scalable dimension: ...".
- A target tracking policy on a SageMaker variant creates no CloudWatch alarms (moto does it for DynamoDB and
  ECS only) -> the two alarms Application Auto Scaling creates and lists in the policy's ``Alarms``, named as it
  names them (``TargetTracking-endpoint/<name>/variant/<variant>-AlarmHigh-<uuid>`` and ``-AlarmLow-<uuid>``),
  on the variant's ``InvocationsPerInstance`` (the ``SageMakerVariantInvocationsPerInstance`` predefined metric):
  ``AlarmHigh`` above the target for 3 one-minute periods, ``AlarmLow`` (unless ``DisableScaleIn``) below 90% of
  it for 15. AWS does not document those alarms' exact settings; these are what its consoles show. A policy that
  is replaced or deleted takes its alarms with it. (Nothing scales the variant locally: one process serves it.)
- ``DeleteEndpoint`` leaves the variants' scalable targets registered. AWS: "If you delete an endpoint,
  Application Auto Scaling checks to see whether any of the models on that endpoint are targets for auto scaling
  [and] deregisters those models as scalable targets" (SageMaker Developer Guide, "Delete endpoints configured
  for auto scaling") -> ``deregister_endpoint``, called by the local SageMaker's DeleteEndpoint.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from typing import Any
from unittest import mock

from moto.applicationautoscaling.models import (
    ApplicationAutoscalingBackend,
    FakeApplicationAutoscalingPolicy,
    applicationautoscaling_backends,
)
from moto.core.exceptions import JsonRESTError

SAGEMAKER_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
INVOCATIONS_PER_INSTANCE = "SageMakerVariantInvocationsPerInstance"


class ObjectNotFoundException(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("ObjectNotFoundException", message)


def _matches(item: Any, namespace: str, resource_id: str, dimension: str) -> bool:
    return bool(
        item.service_namespace == namespace and item.resource_id == resource_id and item.scalable_dimension == dimension
    )


def _sagemaker_alarms(policy: FakeApplicationAutoscalingPolicy) -> list[Any]:
    from moto.cloudwatch.models import cloudwatch_backends

    config = policy.target_tracking_scaling_policy_configuration or {}
    metric_type = (config.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
    if metric_type != INVOCATIONS_PER_INSTANCE:
        return []
    _, endpoint_name, _, variant_name = policy.resource_id.split("/", 3)
    target = float(config["TargetValue"])
    cloudwatch = cloudwatch_backends[policy.account_id][policy.region_name]
    action = f"{policy.policy_arn}:createdBy/{uuid.uuid4()}"
    common: dict[str, Any] = {
        "namespace": "AWS/SageMaker",
        "metric_name": "InvocationsPerInstance",
        "dimensions": [
            {"Name": "EndpointName", "Value": endpoint_name},
            {"Name": "VariantName", "Value": variant_name},
        ],
        "statistic": "Sum",
        "period": 60,
        "description": f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {action}.",
        "alarm_actions": [action],
        "metric_data_queries": [],
    }
    kinds = [("AlarmHigh", "GreaterThanThreshold", target, 3)]
    if not config.get("DisableScaleIn"):
        kinds.append(("AlarmLow", "LessThanThreshold", target * 0.9, 15))
    return [
        cloudwatch.put_metric_alarm(
            name=f"TargetTracking-{policy.resource_id}-{kind}-{uuid.uuid4()}",
            comparison_operator=operator,
            threshold=threshold,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            **common,
        )
        for kind, operator, threshold, periods in kinds
    ]


def deregister_endpoint(account_id: str, region: str, endpoint_name: str) -> list[str]:
    """Deregister the scalable targets of an endpoint's variants (with their policies); returns their ids."""
    backend = applicationautoscaling_backends[account_id][region]
    prefix = f"endpoint/{endpoint_name}/variant/"
    targets = [
        t for t in backend.describe_scalable_targets("sagemaker", None, None) if t.resource_id.startswith(prefix)
    ]
    for target in targets:
        backend.deregister_scalable_target("sagemaker", target.resource_id, target.scalable_dimension)
    return [t.resource_id for t in targets]


def install(patches: ExitStack) -> None:
    original_put = ApplicationAutoscalingBackend.put_scaling_policy
    original_deregister = ApplicationAutoscalingBackend.deregister_scalable_target
    original_create_alarms = FakeApplicationAutoscalingPolicy.create_alarms

    def put_scaling_policy(
        self: ApplicationAutoscalingBackend,
        policy_name: str,
        service_namespace: str,
        resource_id: str,
        scalable_dimension: str,
        policy_body: dict[str, Any],
        policy_type: str | None,
    ) -> FakeApplicationAutoscalingPolicy:
        if not self.describe_scalable_targets(service_namespace, [resource_id], scalable_dimension):
            raise ObjectNotFoundException(
                f"No scalable target registered for service namespace: {service_namespace}, "
                f"resource ID: {resource_id}, scalable dimension: {scalable_dimension}"
            )
        key = FakeApplicationAutoscalingPolicy.formulate_key(
            service_namespace, resource_id, scalable_dimension, policy_name
        )
        replaced = self.policies.get(key)
        policy = original_put(
            self, policy_name, service_namespace, resource_id, scalable_dimension, policy_body, policy_type
        )
        if replaced is not None and replaced is not policy:
            replaced.delete_alarms(self.account_id, self.region_name)
        return policy

    def deregister_scalable_target(
        self: ApplicationAutoscalingBackend, namespace: str, r_id: str, dimension: str
    ) -> None:
        if not self.describe_scalable_targets(namespace, [r_id], dimension):
            raise ObjectNotFoundException(
                f"No scalable target found for service namespace: {namespace}, resource ID: {r_id}, "
                f"scalable dimension: {dimension}"
            )
        original_deregister(self, namespace, r_id, dimension)
        for key, policy in list(self.policies.items()):
            if _matches(policy, namespace, r_id, dimension):
                policy.delete_alarms(self.account_id, self.region_name)
                del self.policies[key]
        self.scheduled_actions = [a for a in self.scheduled_actions if not _matches(a, namespace, r_id, dimension)]

    def create_alarms(self: FakeApplicationAutoscalingPolicy) -> None:
        original_create_alarms(self)
        sagemaker = self.service_namespace == "sagemaker" and self.scalable_dimension == SAGEMAKER_DIMENSION
        if self.policy_type == "TargetTrackingScaling" and sagemaker:
            self.alarms.extend(_sagemaker_alarms(self))

    for owner, name, value in (
        (ApplicationAutoscalingBackend, "put_scaling_policy", put_scaling_policy),
        (ApplicationAutoscalingBackend, "deregister_scalable_target", deregister_scalable_target),
        (FakeApplicationAutoscalingPolicy, "create_alarms", create_alarms),
    ):
        patches.enter_context(mock.patch.object(owner, name, value))
