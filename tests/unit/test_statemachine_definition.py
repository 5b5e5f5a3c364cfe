"""The ASL tested as code: wiring, bounded tasks, one retry policy, errors that exist, no duplicate edges."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from dropship import errors
from dropship.diagram import edges, mermaid

# Step Functions' own errors, and Lambda's as Step Functions names them (a runtime that died: Runtime.ExitError)
AWS_ERRORS = re.compile(r"^(States\.[A-Za-z]+|Lambda\.[A-Za-z]+|Runtime\.ExitError)$")


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


def machines(machine: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The state machine and every Parallel branch in it (each is its own scope of state names)."""
    yield machine
    for state in machine["States"].values():
        for branch in state.get("Branches", []):
            yield from machines(branch)


def all_states(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for machine in machines(asl) for name, state in machine["States"].items()}


def tasks(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in all_states(asl).items() if state["Type"] == "Task"}


def test_every_substitution_is_provided_and_used(template: dict[str, Any], asl_text: str) -> None:
    used = set(re.findall(r"\$\{(\w+)\}", asl_text))
    provided = set(state_machine(template)["DefinitionSubstitutions"])
    assert used == provided


def test_every_transition_targets_a_state_and_every_state_is_reachable(asl: dict[str, Any]) -> None:
    for machine in machines(asl):
        states = machine["States"]
        reachable, todo = set(), [machine["StartAt"]]
        while todo:
            name = todo.pop()
            if name in reachable:
                continue
            reachable.add(name)
            for _, target, _ in edges(name, states[name]):
                assert target in states, f"{name} goes to unknown state {target}"
                todo.append(target)
        assert reachable == set(states)


def test_no_transition_is_drawn_twice(asl: dict[str, Any]) -> None:
    # A Catch that goes where Next goes is two arrows between the same states in the console.
    for name, state in all_states(asl).items():
        targets = [target for _, target, _ in edges(name, state)]
        assert len(targets) == len(set(targets)), f"{name} has two transitions to one state: {targets}"


def test_every_task_is_bounded_and_retried_with_the_one_policy(asl: dict[str, Any]) -> None:
    found = tasks(asl)
    policy = found["Validate Artifact"]["Retry"][0]
    assert {"TransientAwsError", "Lambda.TooManyRequestsException", "Runtime.ExitError"} <= set(policy["ErrorEquals"])
    assert policy["MaxAttempts"] <= 5 and policy["BackoffRate"] >= 1
    for name, state in found.items():
        assert state["Retry"][0] == policy, f"{name} retries transient errors differently"
        if "TimeoutSecondsPath" not in state:
            assert 0 < state.get("TimeoutSeconds", 0) <= 900, f"{name} has no sensible TimeoutSeconds"
    # The only other retry: the event-driven waits time out now and then to look for themselves
    waits = {name for name, state in found.items() if len(state["Retry"]) > 1}
    assert waits == {"Wait For InService", "Watch"}
    for name in waits:
        assert found[name]["Retry"][1]["ErrorEquals"] == ["States.Timeout"]


def test_every_failure_is_caught(asl: dict[str, Any]) -> None:
    # Top-level tasks and the Parallel have a Catch; the tasks inside the Parallel are caught by it.
    for name, state in asl["States"].items():
        if state["Type"] in ("Task", "Parallel"):
            catches = state.get("Catch", [])
            assert any("States.ALL" in c["ErrorEquals"] for c in catches), f"{name} has no Catch"
            assert all(c.get("ResultPath") not in (None, "$") for c in catches), f"{name} Catch drops the input"
    for branch_state in (s for m in list(machines(asl))[1:] for s in m["States"].values()):
        assert "Catch" not in branch_state


def test_retried_and_caught_error_names_exist(asl: dict[str, Any]) -> None:
    names = {
        error
        for state in all_states(asl).values()
        for rule in state.get("Retry", []) + state.get("Catch", [])
        for error in rule["ErrorEquals"]
    }
    for name in names:
        assert AWS_ERRORS.match(name) or isinstance(getattr(errors, name, None), type), f"{name} is not an error"


def test_failures_end_with_a_contract_code(asl: dict[str, Any]) -> None:
    states = asl["States"]
    assert states["Release Failed"]["ErrorPath"] == "$.failure.code"
    # Whether Clean Up ran or not, $.failure holds a contract code when Release Failed is reached
    assert states["Clean Up"]["ResultPath"] == "$.failure" and states["Clean Up"]["Next"] == "Release Failed"
    fallback = states["Clean Up Failed"]
    assert fallback["ResultPath"] == "$.failure" and fallback["Result"]["code"] in errors.ERROR_CODES


def test_every_error_class_has_a_contract_code() -> None:
    codes = {cls.code for cls in errors.DropshipError.__subclasses__()}
    assert codes == set(errors.ERROR_CODES)
    for cls in errors.DropshipError.__subclasses__():
        assert cls.__name__.endswith("Error")
        assert errors.code_for(cls.__name__) == cls.code
    assert errors.code_for("States.Timeout") == "InternalError"


def test_waits_are_bounded_by_the_tasks_after_them(asl: dict[str, Any]) -> None:
    # Every Wait loops back to a Task whose handler gives up after a deadline (AliasConflict).
    for name, state in all_states(asl).items():
        if state["Type"] == "Wait":
            assert state["SecondsPath"] == "$.release.poll_interval_s"
            assert asl["States"][state["Next"]]["Type"] == "Task", name


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_every_function_handler_exists(template: dict[str, Any], project_dir: Path) -> None:
    found = functions(template)
    assert found
    for name, props in found.items():
        module_name, attribute = props["Handler"].rsplit(".", 1)
        path = project_dir / props["CodeUri"] / f"{module_name}.py"
        spec = importlib.util.spec_from_file_location(f"handler_{name}", path)
        assert spec and spec.loader, name
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert callable(getattr(module, attribute)), f"{name}: {props['Handler']}"
        assert module.__doc__, f"{props['CodeUri']} must say what it does (and why it needs code)"


def test_the_reaper_hears_every_end_of_the_release_state_machine(template: dict[str, Any]) -> None:
    pattern = functions(template)["ReaperFunction"]["Events"]["ExecutionEnded"]["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert set(pattern["detail"]["status"]) == {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def test_endpoint_events_are_only_this_stacks(template: dict[str, Any]) -> None:
    pattern = functions(template)["EndpointEventsFunction"]["Events"]["EndpointStateChanged"]["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker Endpoint State Change"]
    assert pattern["detail"]["Tags"] == {"dropship:stack": [{"Ref": "AWS::StackName"}]}


def test_outputs_are_the_contracts(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) == {
        "ModelBucketName",
        "ReleaseStateMachineArn",
        "EventBusName",
        "ReleasesTableName",
        "AliasPrefix",
    }


def test_the_cli_names_real_states_and_outputs(template: dict[str, Any], asl: dict[str, Any]) -> None:
    from dropship.cli.release import DUPLICATE_STATE, WATCH_STATE
    from dropship.cli.stack import OUTPUT_NAMES

    assert DUPLICATE_STATE in asl["States"] and WATCH_STATE in asl["States"]
    assert set(OUTPUT_NAMES) == set(template["Outputs"])


def test_the_template_and_the_manifest_agree_on_instance_types(template: dict[str, Any]) -> None:
    from dropship.manifest import INSTANCE_TYPE_PATTERN

    assert template["Parameters"]["DefaultInstanceType"]["AllowedPattern"] == INSTANCE_TYPE_PATTERN


def test_the_rule_fires_only_on_drop_keys(template: dict[str, Any]) -> None:
    pattern = state_machine(template)["Events"]["ModelDropped"]["Properties"]["Pattern"]
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "models/*/model.tar.gz"}]
    assert pattern["detail-type"] == ["Object Created"]


def test_readme_diagram_is_generated_from_the_asl(project_dir: Path, asl: dict[str, Any]) -> None:
    # Regenerate with `make diagram` if this fails.
    readme = (project_dir / "README.md").read_text()
    assert f"```mermaid\n{mermaid(asl)}```" in readme
