"""Deploying the project's real SAM template into the emulated account.

The same ``template.yaml`` that ``sam deploy`` ships to AWS is deployed here, with only the steps
``sam package`` would do done locally: code directories become (tiny) S3 objects, the state machine's
``DefinitionUri`` is inlined, then aws-sam-translator turns SAM into plain CloudFormation and moto's
CloudFormation creates it. What the local runtime needs to run a function (its code directory, handler
and layer directories) is remembered here, keyed by the physical function name.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

log = logging.getLogger(__name__)

DEFAULT_STACK_NAME = "dropship"
ARTIFACT_BUCKET = "dropship-local-artifacts"
ACCOUNT_ID = "123456789012"  # moto's default account, the one any local credentials map to
# The fake public Powertools layer: functions reference it via an SSM public parameter; its content
# is unused locally because Powertools is installed in the environment the workers run in.
POWERTOOLS_SSM_PREFIX = "/aws/service/powertools/"
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-local"

_SSM_PARAMETER_TYPE_PREFIX = "AWS::SSM::Parameter::Value<"


class DeployError(RuntimeError):
    """The template could not be deployed; the message names the resource and moto's reason."""


@dataclass(frozen=True)
class DeployedFunction:
    """What the local Lambda runtime needs to run one deployed function from its source."""

    name: str
    logical_id: str
    code_dir: Path
    handler: str
    layer_dirs: tuple[Path, ...] = ()


@dataclass
class Deployment:
    stack_name: str
    stack_id: str
    outputs: dict[str, str]
    functions: dict[str, DeployedFunction] = field(default_factory=dict)
    cloudformation_template: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Reading the template


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader for CloudFormation: short-form intrinsics, and no YAML 1.1 date surprises.

    Kept as a subclass so the global ``yaml.SafeLoader`` is not modified (samtranslator's own
    ``yaml_parse`` registers its constructor on it process-wide).
    """


_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    value: Any
    if tag_suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):
        value = str(loader.construct_scalar(node)).split(".", 1)
    elif isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation YAML (or JSON) template, short-form tags included."""
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise DeployError(f"{path}: not a CloudFormation template (no Resources)")
    return data


# --------------------------------------------------------------------------------------------------
# Packaging (what `sam package` does, locally)


def _placeholder_zip(label: str) -> bytes:
    """A tiny valid zip: the local runtime runs code from its directory, not from this archive."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("LOCAL.txt", f"dropship local stack placeholder for {label}\n")
    return buf.getvalue()


def _local_dir(template_dir: Path, uri: Any, what: str) -> Path | None:
    if not isinstance(uri, str) or uri.startswith("s3://"):
        return None
    path = (template_dir / uri).resolve()
    if not path.is_dir():
        raise DeployError(f"{what}: {uri!r} is not a directory under {template_dir}")
    return path


def _package(template: dict[str, Any], template_dir: Path, s3: Any) -> tuple[dict[str, Path], dict[str, Path]]:
    """Point code at S3 and inline state machine definitions. Returns S3 key -> local dir maps."""
    function_globals = template.get("Globals", {}).get("Function", {})
    code_by_key: dict[str, Path] = {}
    layer_by_key: dict[str, Path] = {}

    def upload(key: str, label: str) -> dict[str, str]:
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=_placeholder_zip(label))
        return {"Bucket": ARTIFACT_BUCKET, "Key": key}

    for logical_id, resource in template["Resources"].items():
        rtype = resource.get("Type")
        props = resource.setdefault("Properties", {})
        if rtype == "AWS::Serverless::Function":
            if props.get("InlineCode") or props.get("PackageType", function_globals.get("PackageType")) == "Image":
                continue
            code_dir = _local_dir(
                template_dir, props.get("CodeUri", function_globals.get("CodeUri")), f"{logical_id}.CodeUri"
            )
            if code_dir is None:
                continue
            key = f"functions/{logical_id}.zip"
            props["CodeUri"] = upload(key, logical_id)
            code_by_key[key] = code_dir
        elif rtype == "AWS::Serverless::LayerVersion":
            content_dir = _local_dir(template_dir, props.get("ContentUri"), f"{logical_id}.ContentUri")
            if content_dir is None:
                continue
            key = f"layers/{logical_id}.zip"
            props["ContentUri"] = upload(key, logical_id)
            layer_by_key[key] = content_dir
        elif rtype == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            uri = props.pop("DefinitionUri")
            path = (template_dir / uri).resolve()
            try:
                text = path.read_text(encoding="utf-8")
                props["Definition"] = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                raise DeployError(f"{logical_id}.DefinitionUri: cannot read {path}: {exc}") from exc
    return code_by_key, layer_by_key


class _BundledManagedPolicies:
    """Managed policy name -> ARN map for samtranslator without calling IAM (works offline)."""

    def __init__(self, partition: str = "aws") -> None:
        self._partition = partition

    def load(self) -> dict[str, str]:
        from samtranslator.internal.managed_policies import get_bundled_managed_policy_map

        return dict(get_bundled_managed_policy_map(self._partition) or {})


def translate(sam_template: dict[str, Any], parameter_values: dict[str, str], region: str) -> dict[str, Any]:
    """SAM -> CloudFormation with aws-sam-translator (offline)."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    # Its metrics go to a do-nothing publisher, and it warns "unpublished metrics" when they are dropped.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # samtranslator reads the region from boto3's session
    try:
        return transform(sam_template, dict(parameter_values), _BundledManagedPolicies())
    except InvalidDocumentException as exc:
        reasons = "; ".join(str(cause) for cause in exc.causes)
        raise DeployError(f"SAM transform failed: {reasons}") from exc
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


# --------------------------------------------------------------------------------------------------
# Public parameters the template resolves through SSM


def _seed_public_ssm_parameters(
    template: dict[str, Any], overrides: dict[str, str], lambda_client: Any, region: str
) -> None:
    """Give ``AWS::SSM::Parameter::Value<...>`` parameters something to resolve to.

    The Powertools public layer parameter gets the ARN of a placeholder layer published in the
    emulated account (moto refuses functions whose layers it does not know). Any other public path
    that moto does not know is an error naming the parameter, rather than a crash inside moto.
    """
    from moto.ssm.models import Parameter, ssm_backends

    ssm = ssm_backends[ACCOUNT_ID][region]
    for name, spec in template.get("Parameters", {}).items():
        ptype = str(spec.get("Type", ""))
        if not ptype.startswith(_SSM_PARAMETER_TYPE_PREFIX):
            continue
        path = overrides.get(name, spec.get("Default"))
        if not path or ssm.get_parameter(path) is not None:
            continue
        if path.startswith(POWERTOOLS_SSM_PREFIX):
            layer = lambda_client.publish_layer_version(
                LayerName=POWERTOOLS_LAYER_NAME,
                Description="Placeholder for the public Powertools layer (installed locally)",
                Content={"ZipFile": _placeholder_zip("powertools")},
            )
            value = layer["LayerVersionArn"]
        else:
            raise DeployError(
                f"Parameter {name}: SSM parameter {path!r} does not exist in the local stack; "
                "pass a value with parameter_overrides"
            )
        from datetime import UTC, datetime

        # Written into the backend directly: the API refuses names under the reserved /aws prefix.
        parameter_class: Any = Parameter  # moto's CloudFormationModel abstract methods are irrelevant here
        ssm._parameters[path].append(
            parameter_class(
                account_id=ACCOUNT_ID,
                name=path,
                value=value,
                parameter_type="String",
                description="dropship local stack",
                allowed_pattern=None,
                keyid=None,
                last_modified_date=datetime.now(UTC),
                version=1,
                data_type="text",
            )
        )


# --------------------------------------------------------------------------------------------------
# Deploying


def _client(service: str, endpoint_url: str, region: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - the emulated account accepts any credentials
        config=Config(retries={"max_attempts": 2}),
    )


def _resource_statuses(cfn: Any, stack_name: str) -> list[dict[str, Any]]:
    events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    return [e for e in events if e.get("ResourceStatus", "").endswith("FAILED")]


def _functions(
    template: dict[str, Any],
    stack_resources: list[dict[str, Any]],
    code_by_key: dict[str, Path],
    layer_by_key: dict[str, Path],
    region: str,
) -> dict[str, DeployedFunction]:
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in stack_resources}
    layer_dir_by_arn: dict[str, Path] = {}
    resources = template.get("Resources", {})
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Lambda::LayerVersion":
            key = resource.get("Properties", {}).get("Content", {}).get("S3Key")
            if key in layer_by_key and physical.get(logical_id):
                layer_dir_by_arn[physical[logical_id]] = layer_by_key[key]

    from moto.awslambda.utils import get_backend

    functions: dict[str, DeployedFunction] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        key = resource.get("Properties", {}).get("Code", {}).get("S3Key")
        name = physical.get(logical_id)
        if key not in code_by_key or not name:
            continue
        fn = get_backend(ACCOUNT_ID, region).get_function(name)
        layer_arns = [layer["Arn"] for layer in getattr(fn, "layers", []) or []]
        functions[name] = DeployedFunction(
            name=name,
            logical_id=logical_id,
            code_dir=code_by_key[key],
            handler=str(fn.handler),
            layer_dirs=tuple(layer_dir_by_arn[arn] for arn in layer_arns if arn in layer_dir_by_arn),
        )
    return functions


def deploy_template(
    project_dir: Path,
    *,
    endpoint_url: str,
    region: str = "us-east-1",
    stack_name: str = DEFAULT_STACK_NAME,
    parameter_overrides: dict[str, str] | None = None,
    template_name: str = "template.yaml",
    timeout_s: float = 120.0,
) -> Deployment:
    """Deploy ``<project_dir>/<template_name>`` into the emulated account and wait for CREATE_COMPLETE.

    Must run in the process hosting the moto server (public SSM parameters and function details
    are read from moto's backends directly).
    """
    overrides = dict(parameter_overrides or {})
    template_path = project_dir / template_name
    sam_template = load_template(template_path)

    s3 = _client("s3", endpoint_url, region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    else:
        s3.create_bucket(Bucket=ARTIFACT_BUCKET, CreateBucketConfiguration={"LocationConstraint": region})
    code_by_key, layer_by_key = _package(sam_template, template_path.parent, s3)
    _seed_public_ssm_parameters(sam_template, overrides, _client("lambda", endpoint_url, region), region)

    cfn_template = translate(sam_template, overrides, region)

    cfn = _client("cloudformation", endpoint_url, region)
    try:
        stack_id = cfn.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(cfn_template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )["StackId"]
    except Exception as exc:
        raise DeployError(f"create_stack {stack_name} was rejected: {exc}") from exc

    deadline = time.monotonic() + timeout_s
    while True:
        stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            break
        if status.endswith("FAILED") or "ROLLBACK" in status:
            failed = [
                f"{e['LogicalResourceId']} ({e.get('ResourceType')}): {e.get('ResourceStatusReason', '')}"
                for e in _resource_statuses(cfn, stack_id)
            ]
            raise DeployError(
                f"stack {stack_name} {status}: " + ("; ".join(failed) or stack.get("StackStatusReason", ""))
            )
        if time.monotonic() > deadline:
            raise DeployError(f"stack {stack_name} still {status} after {timeout_s:.0f}s")
        time.sleep(0.05)

    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    stack_resources = cfn.list_stack_resources(StackName=stack_id)["StackResourceSummaries"]
    functions = _functions(cfn_template, stack_resources, code_by_key, layer_by_key, region)
    log.info("deployed stack %s: %d resources, %d functions", stack_name, len(stack_resources), len(functions))
    return Deployment(
        stack_name=stack_name,
        stack_id=stack_id,
        outputs=outputs,
        functions=functions,
        cloudformation_template=cfn_template,
    )
