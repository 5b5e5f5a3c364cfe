import json
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from dropship.errors import InvalidManifestError
from dropship.manifest import Manifest, json_schema, parse_manifest


def test_no_manifest_means_all_defaults() -> None:
    manifest = parse_manifest(None)
    assert manifest == Manifest()
    assert (manifest.alias, manifest.retain, manifest.smoke_test) == ("live", 1, [])


def test_full_manifest_parses() -> None:
    raw = {
        "instance_type": "ml.c5.xlarge",
        "initial_instance_count": 2,
        "environment": {"LOG_LEVEL": "debug"},
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1.0",
        "alias": "canary",
        "retain": 3,
        "smoke_test": [
            {"body": '{"instances": [[1, 2]]}', "expect": {"status": 200, "json_schema": {"type": "object"}}},
            {"body_base64": "AAEC", "content_type": "application/x-npy", "max_latency_ms": 500},
            {"body": "1,2", "content_type": "text/csv", "accept": "text/csv", "expect": {"contains": "0"}},
        ],
        "tags": {"team": "risk"},
    }
    manifest = parse_manifest(json.dumps(raw).encode())
    assert manifest.initial_instance_count == 2
    assert manifest.smoke_test[1].payload() == b"\x00\x01\x02"
    assert manifest.smoke_test[0].expect.json_schema == {"type": "object"}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"instance_typo": "ml.m5.large"}', "instance_typo: Extra inputs are not permitted"),
        (b'{"smoke_test": [{"body": "x", "extra": 1}]}', "smoke_test.0.extra"),
        (b'{"instance_type": "m5.large"}', "instance_type"),
        (b'{"initial_instance_count": 0}', "initial_instance_count"),
        (b'{"serverless": {"memory_size_mb": 1000}}', "memory_size_mb"),
        (b'{"serverless": {}, "instance_type": "ml.m5.large"}', "serverless cannot be combined"),
        (b'{"alias": "Live"}', "alias"),
        (b'{"retain": -1}', "retain"),
        (b'{"smoke_test": [{"content_type": "text/csv"}]}', "exactly one of body or body_base64"),
        (b'{"smoke_test": [{"body": "a", "body_base64": "YQ=="}]}', "exactly one of body or body_base64"),
        (b'{"smoke_test": [{"body_base64": "***"}]}', "not valid base64"),
        (b'{"smoke_test": [{"body": "a", "expect": {"contains": "a", "json_equals": 1}}]}', "at most one"),
        (b'{"environment": {"1BAD": "x"}}', "environment variable name"),
        (b'{"environment": {"OK\\n": "x"}}', "environment variable name"),
        (b'{"tags": {"aws:owner": "x"}}', "reserved"),
        (b'{"environment": {"DROPSHIP_ALLOW_PACKAGE_SOURCES": "true"}}', "reserved"),
        (b'{"serverless": {}, "data_capture": {"sampling_percent": 10}}', "serverless endpoints take neither"),
        (
            b'{"autoscaling": {"min_instances": 3, "max_instances": 2, "target_invocations_per_instance": 9}}',
            "max_instances must be at least min_instances",
        ),
        (b'{"watch": {"max_error_rate": 2}}', "watch.max_error_rate"),
        (b'{"data_capture": {"sampling_percent": 10, "capture": ["inputs"]}}', "data_capture.capture"),
        (b'{"tags": {"dropship:stack": "x"}}', "reserved"),
    ],
)
def test_bad_manifests_are_invalid_manifest_naming_the_field(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidManifestError) as raised:
        parse_manifest(raw)
    assert fragment in str(raised.value)


def test_published_schema_is_generated_from_the_model(project_dir: Path) -> None:
    # The JSON Schema in the repo is what `python -m dropship.manifest` prints: regenerate it if this fails.
    published = json.loads((project_dir / "schemas" / "release.schema.json").read_text())
    assert published == json_schema()


def test_schema_rejects_unknown_fields() -> None:
    assert json_schema()["additionalProperties"] is False


def test_a_manifest_round_trips_through_json() -> None:
    # The state machine passes the resolved samples between tasks as JSON: they must validate back unchanged.
    manifest = parse_manifest(
        b'{"smoke_test": [{"body": "1", "expect": {"json_equals": null}}, {"body": "2"}, '
        b'{"body": "3", "expect": {"status": 201, "contains": "x"}}]}'
    )
    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest
    assert json.loads(manifest.model_dump_json())["smoke_test"][1]["expect"] == {"status": 200}


# Properties: the published schema never refuses a manifest dropship accepts ---------------------------


def mostly(valid: st.SearchStrategy[object], invalid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Valid values seven times in eight, so many generated manifests pass and get checked."""
    return st.integers(0, 7).flatmap(lambda pick: invalid if pick == 0 else valid)


text = st.text(alphabet="abcXYZ09_.:-/ =+@\n", max_size=12)
json_scalar = st.none() | st.booleans() | st.integers(-5, 300) | text
expectations = st.fixed_dictionaries(
    {},
    optional={
        "status": mostly(st.integers(100, 599), st.integers(0, 700)),
        "contains": text,
        "json_equals": json_scalar,
        "json_schema": st.just({"type": "object"}),
    },
)
samples = st.one_of(
    st.fixed_dictionaries({"body": text}, optional={"expect": expectations}),
    st.fixed_dictionaries(
        {},
        optional={
            "body": text,
            "body_base64": mostly(st.sampled_from(["AAEC", "YQ==", ""]), st.just("***")),
            "content_type": mostly(st.sampled_from(["application/json", "text/csv"]), st.just("")),
            "accept": st.sampled_from(["*/*", "application/json"]),
            "expect": expectations,
            "max_latency_ms": mostly(st.integers(1, 60_000), st.integers(-1, 70_000)),
        },
    ),
)
serverless = st.fixed_dictionaries(
    {},
    optional={
        "memory_size_mb": mostly(st.sampled_from([1024, 6144]), st.just(1000)),
        "max_concurrency": mostly(st.integers(1, 200), st.integers(0, 201)),
    },
)
common_fields = {
    "environment": st.dictionaries(
        mostly(st.sampled_from(["A", "LOG_LEVEL", "_x"]), st.sampled_from(["1BAD", "OK\n"])), text, max_size=3
    ),
    "image_uri": mostly(st.just("123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"), st.just("")),
    "alias": mostly(st.sampled_from(["live", "canary-2"]), st.sampled_from(["Live", "-x", "a" * 33])),
    "retain": mostly(st.integers(0, 10), st.integers(-1, 11)),
    "smoke_test": st.lists(samples, max_size=3),
    "tags": st.dictionaries(
        mostly(st.sampled_from(["team", "cost center"]), st.sampled_from(["aws:x", "dropship:stack"])),
        text,
        max_size=3,
    ),
}
instance_fields = {
    "instance_type": mostly(st.sampled_from(["ml.m5.large", "ml.c5.xlarge"]), st.just("m5.large")),
    "initial_instance_count": mostly(st.integers(1, 100), st.integers(-1, 101)),
}
manifests = st.one_of(
    st.fixed_dictionaries({}, optional={**common_fields, **instance_fields}),
    st.fixed_dictionaries({"serverless": serverless}, optional=common_fields),
    st.fixed_dictionaries({"serverless": serverless}, optional={**common_fields, **instance_fields}),
)


@given(manifests)
def test_what_dropship_accepts_the_published_schema_accepts_and_round_trips(raw: dict[str, object]) -> None:
    # Given a manifest dropship accepts (any it refuses names a field: InvalidManifest)
    try:
        manifest = parse_manifest(json.dumps(raw).encode())
    except InvalidManifestError as exc:
        assert "release.json is invalid: " in str(exc)
        event("refused")
        return
    event("accepted")
    # Then an editor validating release.json against the published schema accepts it too
    Draft202012Validator(json_schema()).validate(raw)
    # And it survives the JSON trip through the state machine unchanged
    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest
