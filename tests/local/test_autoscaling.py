"""Application Auto Scaling of SageMaker variants in the local stack, recorded as AWS records it."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError

from dropship.endpoints import SCALABLE_DIMENSION, Endpoints, scaling_resource_id
from dropship.local import LocalStack
from dropship.manifest import AutoscalingConfig
from dropship.release import Deployment, Release
from tests.local.helpers import in_service, start_endpoint


def _release(name: str) -> Release:
    """What dropship's Update Alias step registers for a release (the fields it reads)."""
    deployment = Deployment.model_construct(
        autoscaling=AutoscalingConfig(
            min_instances=1, max_instances=4, target_invocations_per_instance=50, scale_in_cooldown_s=120
        )
    )
    return Release.model_construct(resource_name=name, deployment=deployment)


def _target(name: str) -> dict[str, str]:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": scaling_resource_id(name),
        "ScalableDimension": SCALABLE_DIMENSION,
    }


def test_a_variants_scaling_is_recorded_and_deleting_the_endpoint_deregisters_it(stack: LocalStack, aws) -> None:
    # Given an endpoint whose variant dropship registers for target tracking
    start_endpoint(aws, stack, "scaled-1")
    in_service(aws, "scaled-1")
    autoscaling, cloudwatch = aws("application-autoscaling"), aws("cloudwatch")
    Endpoints(aws("sagemaker"), autoscaling=autoscaling).register_autoscaling(_release("scaled-1"))

    # Then the scalable target and the policy are visible through the API
    [target] = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert {k: target[k] for k in ("ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity")} == {
        "ResourceId": "endpoint/scaled-1/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 4,
    }
    [policy] = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=target["ResourceId"])[
        "ScalingPolicies"
    ]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 50.0
    # with the two CloudWatch alarms Application Auto Scaling creates for it, named as it names them
    names = sorted(alarm["AlarmName"] for alarm in policy["Alarms"])
    assert [re.sub(r"-[0-9a-f-]{36}$", "", name) for name in names] == [
        "TargetTracking-endpoint/scaled-1/variant/AllTraffic-AlarmHigh",
        "TargetTracking-endpoint/scaled-1/variant/AllTraffic-AlarmLow",
    ]
    alarms = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    assert {(a["MetricName"], a["Namespace"], a["Statistic"], a["Threshold"]) for a in alarms} == {
        ("InvocationsPerInstance", "AWS/SageMaker", "Sum", 50.0),
        ("InvocationsPerInstance", "AWS/SageMaker", "Sum", 45.0),
    }
    assert all(
        a["Dimensions"]
        == [{"Name": "EndpointName", "Value": "scaled-1"}, {"Name": "VariantName", "Value": "AllTraffic"}]
        for a in alarms
    )
    assert all(
        a["AlarmActions"] == [a["AlarmActions"][0]] and policy["PolicyARN"] in a["AlarmActions"][0] for a in alarms
    )

    # When the endpoint is deleted behind dropship's back, Then Application Auto Scaling deregisters the variant
    aws("sagemaker").delete_endpoint(EndpointName="scaled-1")
    assert autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"] == []


def test_a_policy_needs_a_registered_target(aws) -> None:
    # moto 5.2.5 accepts a policy for a target nobody registered
    with pytest.raises(ClientError) as caught:
        aws("application-autoscaling").put_scaling_policy(
            PolicyName="orphan",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 10.0,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            },
            **_target("nobody"),
        )
    assert caught.value.response["Error"]["Code"] == "ObjectNotFoundException"
    assert caught.value.response["Error"]["Message"] == (
        "No scalable target registered for service namespace: sagemaker, resource ID: "
        "endpoint/nobody/variant/AllTraffic, scalable dimension: sagemaker:variant:DesiredInstanceCount"
    )


def test_deregistering_deletes_the_policies_and_an_unknown_target_is_not_found(aws) -> None:
    # moto 5.2.5 keeps the policies of a deregistered target, and calls an unknown one a ValidationException
    autoscaling, target = aws("application-autoscaling"), _target("gone-1")
    autoscaling.register_scalable_target(MinCapacity=1, MaxCapacity=2, **target)
    autoscaling.put_scaling_policy(
        PolicyName="gone-1-policy",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 10.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "DisableScaleIn": True,
        },
        **target,
    )
    [policy] = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=target["ResourceId"])[
        "ScalingPolicies"
    ]
    kinds = [re.sub(r"^.*-(Alarm\w+)-[0-9a-f-]{36}$", r"\1", a["AlarmName"]) for a in policy["Alarms"]]
    assert kinds == ["AlarmHigh"]  # no scale in, no AlarmLow
    autoscaling.deregister_scalable_target(**target)
    assert (
        autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=target["ResourceId"])[
            "ScalingPolicies"
        ]
        == []
    )
    assert aws("cloudwatch").describe_alarms(AlarmNames=[policy["Alarms"][0]["AlarmName"]])["MetricAlarms"] == []
    with pytest.raises(ClientError) as caught:
        autoscaling.deregister_scalable_target(**target)
    assert caught.value.response["Error"]["Code"] == "ObjectNotFoundException"
    assert caught.value.response["Error"]["Message"].startswith("No scalable target found for service namespace: ")
