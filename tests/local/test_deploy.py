"""Deploying a SAM template into the local stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dropship.local import DeployError, LocalStack
from dropship.local.deploy import load_template


def test_the_stack_is_created_with_its_outputs(stack: LocalStack, aws) -> None:
    # Given the sample stack started
    # When its outputs and resources are read back
    outputs = stack.outputs
    resources = aws("cloudformation").list_stack_resources(StackName="dropship")["StackResourceSummaries"]

    # Then it is complete and its outputs are real names, not moto objects
    assert aws("cloudformation").describe_stacks(StackName="dropship")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert outputs["BusName"] == "dropship-bus"
    assert outputs["FlowArn"].startswith("arn:aws:states:us-east-1:123456789012:stateMachine:")
    assert {r["LogicalResourceId"] for r in resources} >= {"Bucket", "Table", "WorkFunction", "Flow", "Bus"}
    assert aws("ssm").get_parameter(Name="/harness/greeting")["Parameter"]["Value"] == "hello"


def test_the_state_machine_is_runnable_with_substitutions_applied(stack: LocalStack, aws) -> None:
    # When the state machine is described through the API
    described = aws("stepfunctions").describe_state_machine(stateMachineArn=stack.outputs["FlowArn"])

    # Then the executing backend knows it and DefinitionSubstitutions were applied
    definition = json.loads(described["definition"])
    function_arn = definition["States"]["Work"]["Parameters"]["FunctionName"]
    assert function_arn.endswith(":function:" + stack.outputs["WorkFunctionName"])
    assert described["tracingConfiguration"] == {"enabled": True}


def test_bucket_table_and_functions_get_the_properties_moto_drops(stack: LocalStack, aws) -> None:
    bucket = stack.outputs["BucketName"]
    # Then the bucket notifies EventBridge (moto's GetBucketNotificationConfiguration never lists
    # EventBridge, so the backend is asked) and is versioned
    from moto.s3.models import s3_backends

    notification = s3_backends["123456789012"]["aws"].get_bucket(bucket).notification_configuration
    assert notification is not None and notification.event_bridge is not None
    assert aws("s3").get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    # And the table has its TTL
    ttl = aws("dynamodb").describe_time_to_live(TableName=stack.outputs["TableName"])["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    # And the function knows its layers (the local one and the placeholder Powertools one)
    config = aws("lambda").get_function_configuration(FunctionName=stack.outputs["WorkFunctionName"])
    assert len(config["Layers"]) == 2


def test_the_runtime_knows_each_function_source(stack: LocalStack, sample_project: Path) -> None:
    assert stack.deployment is not None
    work = stack.deployment.functions[stack.outputs["WorkFunctionName"]]
    assert work.code_dir == sample_project / "functions" / "work"
    assert work.handler == "app.handler"
    assert work.layer_dirs == (sample_project / "shared",)


def test_short_form_intrinsics_and_dates_are_read_as_cloudformation(tmp_path: Path) -> None:
    # Given a template with short-form tags and an unquoted date
    (tmp_path / "t.yaml").write_text(
        "AWSTemplateFormatVersion: 2010-09-09\n"
        "Resources:\n"
        "  A:\n"
        "    Type: X\n"
        "    Properties:\n"
        "      Arn: !GetAtt B.Arn\n"
        "      Name: !Sub '${AWS::StackName}-a'\n"
        "      Pick: !If [IsProd, !Ref P, !Join ['', [a, b]]]\n"
    )
    # When it is loaded
    template = load_template(tmp_path / "t.yaml")
    # Then dates stay strings and tags become their long forms
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    props = template["Resources"]["A"]["Properties"]
    assert props["Arn"] == {"Fn::GetAtt": ["B", "Arn"]}
    assert props["Name"] == {"Fn::Sub": "${AWS::StackName}-a"}
    assert props["Pick"] == {"Fn::If": ["IsProd", {"Ref": "P"}, {"Fn::Join": ["", ["a", "b"]]}]}


def test_a_missing_definition_file_is_an_error_naming_the_resource(tmp_path: Path) -> None:
    # Given a project whose state machine definition does not exist (and no stack running yet in it)
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Machine:\n"
        "    Type: AWS::Serverless::StateMachine\n"
        "    Properties:\n"
        "      DefinitionUri: statemachine/missing.asl.json\n"
    )
    from dropship.local.deploy import _package

    class _S3:
        def put_object(self, **kwargs: object) -> None:
            raise AssertionError("nothing to upload")

    # When it is packaged, Then the error names the resource
    with pytest.raises(DeployError, match=r"Machine\.DefinitionUri"):
        _package(load_template(tmp_path / "template.yaml"), tmp_path, _S3())


EARLIER_MOTO_CLOUDFORMATION_THEN_STACK = """
import json, sys
from pathlib import Path

import boto3
from moto import mock_aws

from dropship.local import LocalStack, free_port

# An earlier moto CloudFormation call in this process: moto caches the list of models it knows.
with mock_aws():
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="earlier", TemplateBody=json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}})
    )

project, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
with LocalStack(project, port=free_port(), run_dir=run_dir) as stack:
    cfn = boto3.client(
        "cloudformation", endpoint_url=stack.endpoint_url, region_name="us-east-1",
        aws_access_key_id="t", aws_secret_access_key="t",
    )
    resources = cfn.list_stack_resources(StackName="dropship")["StackResourceSummaries"]
    print(json.dumps({
        "skipped": sorted(stack.skipped_resource_types),
        "types": sorted({r["ResourceType"] for r in resources}),
    }))
"""


def test_the_bucket_policy_is_created_after_an_earlier_moto_cloudformation_call(
    sample_project: Path, tmp_path: Path
) -> None:
    # Given a process in which moto's CloudFormation already ran (it caches the models it knows)
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", EARLIER_MOTO_CLOUDFORMATION_THEN_STACK, str(sample_project), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # When the local stack deploys a template with a bucket policy, Then the policy is not skipped
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["skipped"] == []
    assert "AWS::S3::BucketPolicy" in report["types"]
