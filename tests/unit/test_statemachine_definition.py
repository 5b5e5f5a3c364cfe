"""The ASL tested as code: wiring, bounded tasks, retried and caught errors that exist."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from dropship import errors
from dropship.diagram import mermaid

AWS_ERRORS = re.compile(r"^(States\.[A-Za-z]+|Lambda\.[A-Za-z]+)$")


@pytest.fixture(scope="module")
def template(project_dir: Path) -> dict[str, Any]:
    return yaml_parse((project_dir / "template.yaml").read_text())


@pytest.fixture(scope="module")
def asl_text(project_dir: Path) -> str:
    return (project_dir / "statemachine" / "release.asl.json").read_text()


@pytest.fixture(scope="module")
def asl(asl_text: str) -> dict[str, Any]:
    return json.loads(asl_text)


def state_machine(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["ReleaseStateMachine"]["Properties"]


def test_every_substitution_is_provided_and_used(template: dict[str, Any], asl_text: str) -> None:
    used = set(re.findall(r"\$\{(\w+)\}", asl_text))
    provided = set(state_machine(template)["DefinitionSubstitutions"])
    assert used == provided


def test_every_transition_targets_a_state_and_every_state_is_reachable(asl: dict[str, Any]) -> None:
    states = asl["States"]
    reachable, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        reachable.add(name)
        state = states[name]
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
        for target in filter(None, targets):
            assert target in states, f"{name} goes to unknown state {target}"
            todo.append(target)
    assert reachable == set(states)


def tasks(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in asl["States"].items() if state["Type"] == "Task"}


def test_every_task_is_bounded_retried_and_caught(asl: dict[str, Any]) -> None:
    for name, state in tasks(asl).items():
        assert 0 < state.get("TimeoutSeconds", 0) <= 900, f"{name} has no sensible TimeoutSeconds"
        retried = {e for retry in state.get("Retry", []) for e in retry["ErrorEquals"]}
        assert {"TransientAwsError", "Lambda.TooManyRequestsException"} <= retried, name
        for retry in state["Retry"]:
            assert retry["MaxAttempts"] <= 5 and retry["BackoffRate"] >= 1, name
        catches = state.get("Catch", [])
        assert any("States.ALL" in c["ErrorEquals"] for c in catches), f"{name} has no Catch"
        assert all(c.get("ResultPath") not in (None, "$") for c in catches), f"{name} Catch drops the input"


def test_retried_and_caught_error_names_exist(asl: dict[str, Any]) -> None:
    names = {
        error
        for state in asl["States"].values()
        for rule in state.get("Retry", []) + state.get("Catch", [])
        for error in rule["ErrorEquals"]
    }
    for name in names:
        assert AWS_ERRORS.match(name) or isinstance(getattr(errors, name, None), type), f"{name} is not an error"


def test_failures_end_with_a_contract_code(asl: dict[str, Any]) -> None:
    fails = {name: s for name, s in asl["States"].items() if s["Type"] == "Fail"}
    assert fails["Release Failed"]["ErrorPath"] == "$.failure.code"
    for state in fails.values():
        assert "Error" not in state or state["Error"] in errors.ERROR_CODES


def test_every_error_class_has_a_contract_code() -> None:
    codes = {cls.code for cls in errors.DropshipError.__subclasses__()}
    assert codes == set(errors.ERROR_CODES)
    for cls in errors.DropshipError.__subclasses__():
        assert cls.__name__.endswith("Error")
        assert errors.code_for(cls.__name__) == cls.code
    assert errors.code_for("States.Timeout") == "InternalError"


def test_waits_are_bounded_by_the_tasks_after_them(asl: dict[str, Any]) -> None:
    # Every Wait loops back to a Task whose handler gives up after a deadline (EndpointTimeout, AliasConflict).
    for name, state in asl["States"].items():
        if state["Type"] == "Wait":
            assert state["SecondsPath"] == "$.release.poll_interval_s"
            assert asl["States"][state["Next"]]["Type"] == "Task", name


def test_every_function_handler_exists(template: dict[str, Any], project_dir: Path) -> None:
    functions = {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert functions
    for name, props in functions.items():
        module_name, attribute = props["Handler"].rsplit(".", 1)
        path = project_dir / props["CodeUri"] / f"{module_name}.py"
        spec = importlib.util.spec_from_file_location(f"handler_{name}", path)
        assert spec and spec.loader, name
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert callable(getattr(module, attribute)), f"{name}: {props['Handler']}"


def test_outputs_are_the_contracts(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) == {
        "ModelBucketName",
        "ReleaseStateMachineArn",
        "EventBusName",
        "ReleasesTableName",
        "AliasPrefix",
    }


def test_the_cli_names_real_states_and_outputs(template: dict[str, Any], asl: dict[str, Any]) -> None:
    from dropship.cli.release import DUPLICATE_STATE
    from dropship.cli.stack import OUTPUT_NAMES

    assert DUPLICATE_STATE in asl["States"]
    assert set(OUTPUT_NAMES) == set(template["Outputs"])


def test_the_template_and_the_manifest_agree_on_instance_types(template: dict[str, Any]) -> None:
    from dropship.manifest import INSTANCE_TYPE_PATTERN

    assert template["Parameters"]["DefaultInstanceType"]["AllowedPattern"] == INSTANCE_TYPE_PATTERN


def test_pass_states_fail_with_real_error_classes(asl: dict[str, Any]) -> None:
    # A Pass state that writes $.error stands in for a failed task: its Error must be a real exception name.
    for name, state in asl["States"].items():
        if state["Type"] == "Pass" and state.get("ResultPath") == "$.error":
            assert isinstance(getattr(errors, state["Parameters"]["Error"], None), type), name
            assert state["Next"] == "Clean Up"


def test_the_rule_fires_only_on_drop_keys(template: dict[str, Any]) -> None:
    pattern = state_machine(template)["Events"]["ModelDropped"]["Properties"]["Pattern"]
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "models/*/model.tar.gz"}]
    assert pattern["detail-type"] == ["Object Created"]


def test_readme_diagram_is_generated_from_the_asl(project_dir: Path, asl: dict[str, Any]) -> None:
    # Regenerate with `make diagram` if this fails.
    readme = (project_dir / "README.md").read_text()
    assert f"```mermaid\n{mermaid(asl)}```" in readme
