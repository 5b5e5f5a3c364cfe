import json
from pathlib import Path

import pytest

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
