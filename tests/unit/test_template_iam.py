"""Least privilege in template.yaml: SageMaker tags can only be written by the create call that makes a resource.

Retire and Clean Up delete what carries the stack's tag, so a function that could tag any existing SageMaker
resource could bring it into their reach. ``sagemaker:TaggingAction`` is the action that is creating the
tags; it is absent from a direct ``AddTags`` call, so a ``StringEquals`` on it allows tag-on-create only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

CREATE_ACTIONS = {"CreateModel": "model", "CreateEndpointConfig": "endpoint-config", "CreateEndpoint": "endpoint"}


@pytest.fixture(scope="module")
def template(project_dir: Path) -> dict[str, Any]:
    return yaml_parse((project_dir / "template.yaml").read_text())


def statements(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy statement anywhere in the template, with the path to it."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield where, node
        for key, value in node.items():
            yield from statements(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from statements(value, f"{where}/{index}")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants_add_tags(statement: dict[str, Any]) -> bool:
    if "NotAction" in statement:
        return not any(fnmatch.fnmatch("sagemaker:AddTags", a) for a in as_list(statement["NotAction"]))
    return any(fnmatch.fnmatch("sagemaker:AddTags", action) for action in as_list(statement["Action"]))


def resource_text(resource: Any) -> str:
    return resource["Fn::Sub"] if isinstance(resource, dict) and "Fn::Sub" in resource else str(resource)


def add_tags_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(w, s) for w, s in statements(template) if s["Effect"] == "Allow" and grants_add_tags(s)]


def test_every_statement_granting_add_tags_allows_it_only_on_create(template: dict[str, Any]) -> None:
    found = add_tags_statements(template)
    assert found, "the create functions need sagemaker:AddTags to tag what they create"
    for where, statement in found:
        # Only AddTags in the statement: the TaggingAction condition would otherwise also bind the create call
        assert as_list(statement["Action"]) == ["sagemaker:AddTags"], where
        equals = statement.get("Condition", {}).get("StringEquals", {})
        tagging_actions = as_list(equals.get("sagemaker:TaggingAction", []))
        assert tagging_actions, f"{where} allows AddTags on existing resources"
        assert set(tagging_actions) <= set(CREATE_ACTIONS), where
        # ... only on the resource type those creates make, and only with the stack's tag in the request
        allowed_types = {CREATE_ACTIONS[action] for action in tagging_actions}
        for resource in as_list(statement["Resource"]):
            assert resource_text(resource).split(":")[-1].split("/")[0] in allowed_types, where
        assert equals.get("aws:RequestTag/dropship:stack") == {"Ref": "AWS::StackName"}, where
        # ... and no other condition operator that could widen it (e.g. ForAnyValue or IfExists)
        assert set(statement["Condition"]) == {"StringEquals"}, where


def test_the_create_function_can_tag_only_what_it_creates(template: dict[str, Any]) -> None:
    create_endpoint = template["Resources"]["CreateEndpointFunction"]
    found = add_tags_statements(create_endpoint)
    assert len(found) == 1
    assert set(as_list(found[0][1]["Condition"]["StringEquals"]["sagemaker:TaggingAction"])) == set(CREATE_ACTIONS)
    for create in CREATE_ACTIONS:
        creates = [s for _, s in statements(create_endpoint) if f"sagemaker:{create}" in as_list(s["Action"])]
        assert creates, f"CreateEndpointFunction lost sagemaker:{create}"


def test_no_other_resource_can_add_sagemaker_tags(template: dict[str, Any]) -> None:
    allowed = {"CreateEndpointFunction"}
    for name, resource in template["Resources"].items():
        if name not in allowed:
            assert not add_tags_statements(resource), f"{name} can tag SageMaker resources"
