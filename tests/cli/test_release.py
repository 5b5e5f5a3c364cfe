"""``dropship release``: checks first, then manifest and tarball to the drop key."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from cli_support import BUCKET, Account

import dropship.cli.stack as cli_stack

SMOKE_MANIFEST = {
    "alias": "live",
    "smoke_test": [{"body": '{"instances": [[5.1, 3.5, 1.4, 0.2]]}', "expect": {"status": 200}}],
}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "iris"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text("# handler\n")
    (folder / "model.joblib").write_bytes(b"model bytes")
    return folder


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "release.json"
    path.write_text(json.dumps(SMOKE_MANIFEST))
    return path


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keys written to S3 by the CLI, in order."""
    calls: list[str] = []
    original = cli_stack.new_session

    def recording_session(target: Any) -> boto3.Session:
        session = original(target)

        def record(params: dict[str, Any], **_: Any) -> None:
            calls.append(params["Key"])

        session.events.register("provide-client-params.s3.PutObject", record)
        session.events.register("provide-client-params.s3.CompleteMultipartUpload", record)
        return session

    monkeypatch.setattr(cli_stack, "new_session", recording_session)
    return calls


def objects(aws: Account) -> list[str]:
    return sorted(o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_a_folder_is_released_manifest_first(
    aws: Account, cli: Any, model_dir: Path, manifest: Path, s3_calls: list[str]
) -> None:
    # When a folder is released with a manifest
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1", "--manifest", str(manifest))

    # Then the manifest, then the tarball are uploaded to the drop key
    assert result.code == 0, result.err
    assert s3_calls == ["models/iris/1/release.json", "models/iris/1/model.tar.gz"]
    stored = aws.s3.get_object(Bucket=BUCKET, Key="models/iris/1/release.json")["Body"].read()
    assert json.loads(stored) == SMOKE_MANIFEST
    # And the tarball holds the folder's files by relative name
    tarball = aws.s3.get_object(Bucket=BUCKET, Key="models/iris/1/model.tar.gz")
    local = model_dir.parent / "downloaded.tar.gz"
    local.write_bytes(tarball["Body"].read())
    with tarfile.open(local, "r:gz") as tar:
        assert tar.getnames() == ["code", "code/inference.py", "model.joblib"]
    # And the S3 URI and the object's VersionId are printed
    assert f"s3://{BUCKET}/models/iris/1/model.tar.gz" in result.out
    assert tarball["VersionId"] in result.out


def test_a_tarball_is_uploaded_as_it_is_without_a_manifest(
    aws: Account, cli: Any, model_dir: Path, s3_calls: list[str]
) -> None:
    # Given a ready-made model.tar.gz
    tarball = model_dir.parent / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(model_dir / "model.joblib", arcname="model.joblib")

    # When it is released
    result = cli("release", str(tarball), "--model", "fraud-v2", "--version", "2026-11-25")

    # Then exactly those bytes are the drop, and no manifest is written
    assert result.code == 0, result.err
    assert s3_calls == ["models/fraud-v2/2026-11-25/model.tar.gz"]
    body = aws.s3.get_object(Bucket=BUCKET, Key="models/fraud-v2/2026-11-25/model.tar.gz")["Body"].read()
    assert body == tarball.read_bytes()


@pytest.mark.parametrize(
    ("model", "version", "fragment"),
    [
        ("Iris", "1", "model name 'Iris' is not allowed"),
        ("iris-", "1", "model name 'iris-' is not allowed"),
        ("iris", "1/2", "version '1/2' is not allowed"),
        ("iris", "v" * 21, "is not allowed"),
    ],
)
def test_bad_names_fail_before_anything_is_uploaded(
    aws: Account, cli: Any, model_dir: Path, model: str, version: str, fragment: str
) -> None:
    result = cli("release", str(model_dir), "--model", model, "--version", version)
    result.assert_error("InvalidKey: ", fragment)
    assert objects(aws) == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"retain": 1, "colour": "blue"}', "colour"),
        ('{"instance_type": "m5.large"}', "instance_type"),
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
    ],
)
def test_an_invalid_manifest_fails_before_anything_is_uploaded(
    aws: Account, cli: Any, model_dir: Path, tmp_path: Path, content: str, fragment: str
) -> None:
    # Given a manifest the release would reject
    path = tmp_path / "bad.json"
    path.write_text(content)

    # When it is released, Then it fails with the contract code and nothing reaches the bucket
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1", "--manifest", str(path))
    result.assert_error("InvalidManifest: ", fragment)
    assert objects(aws) == []


def test_a_missing_manifest_file_is_an_error(aws: Account, cli: Any, model_dir: Path, tmp_path: Path) -> None:
    result = cli(
        "release", str(model_dir), "--model", "iris", "--version", "1", "--manifest", str(tmp_path / "nope.json")
    )
    result.assert_error("cannot read manifest", "nope.json")
    assert objects(aws) == []


def test_a_symlink_out_of_the_folder_fails_the_release(aws: Account, cli: Any, model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text("secret")
    (model_dir / "creds").symlink_to(tmp_path / "credentials")
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1")
    result.assert_error("refusing to pack creds")
    assert objects(aws) == []


def test_a_path_that_is_not_a_model_is_an_error(aws: Account, cli: Any, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = cli("release", str(tmp_path / "notes.txt"), "--model", "iris", "--version", "1")
    result.assert_error("neither a folder nor a .tar.gz")


def test_global_options_work_after_the_command(aws: Account, cli: Any, model_dir: Path) -> None:
    # --region and --stack-name given after the command are honoured (here: a stack that does not exist)
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1", "--stack-name", "other")
    result.assert_error("stack 'other' not found in us-east-1", "sam deploy --guided", "dropship local up")
    assert objects(aws) == []


def test_a_release_without_a_manifest_removes_one_an_earlier_upload_left(
    aws: Account, cli: Any, model_dir: Path, manifest: Path
) -> None:
    # Given version 1 was uploaded once with a manifest
    assert cli("release", str(model_dir), "--model", "iris", "--version", "1", "--manifest", str(manifest)).code == 0
    # When it is uploaded again without one
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1")
    # Then the old manifest is gone, so the release uses the stack's defaults, and the user is told
    assert result.code == 0, result.err
    assert objects(aws) == ["models/iris/1/model.tar.gz"]
    assert "Removed the release.json an earlier upload left" in result.out


def manifest_versions(aws: Account, key: str = "models/iris/1/release.json") -> list[str]:
    """VersionIds of the manifest, newest first."""
    versions = aws.s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", [])
    return [v["VersionId"] for v in sorted(versions, key=lambda v: v["LastModified"], reverse=True)]


def test_the_tarball_pins_the_manifest_version_uploaded_with_it(
    aws: Account, cli: Any, model_dir: Path, manifest: Path
) -> None:
    # Given a manifest already uploaded once for this version
    assert cli("release", str(model_dir), "--model", "iris", "--version", "1", "--manifest", str(manifest)).code == 0

    # When the model is released again with a manifest
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1", "--manifest", str(manifest))

    # Then the tarball's metadata names exactly the manifest version this upload wrote (not the earlier one)
    assert result.code == 0, result.err
    newest, earlier = manifest_versions(aws)
    head = aws.s3.head_object(Bucket=BUCKET, Key="models/iris/1/model.tar.gz")
    assert head["Metadata"] == {"dropship-manifest-version": newest}
    assert newest != earlier
    assert f"VersionId {newest}" in result.out


def test_without_a_manifest_the_tarball_says_none(aws: Account, cli: Any, model_dir: Path) -> None:
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1")
    assert result.code == 0, result.err
    head = aws.s3.head_object(Bucket=BUCKET, Key="models/iris/1/model.tar.gz")
    assert head["Metadata"] == {"dropship-manifest-version": "none"}
    assert "No manifest: the stack's defaults apply" in result.out


def test_a_multipart_upload_pins_the_manifest_too(
    aws: Account, cli: Any, model_dir: Path, manifest: Path, monkeypatch: pytest.MonkeyPatch, s3_calls: list[str]
) -> None:
    # Given tarballs are uploaded in 5 MiB parts from 1 byte on (S3's smallest part size)
    import dropship.cli.release as cli_release

    monkeypatch.setattr(cli_release, "MULTIPART_THRESHOLD", 1)
    monkeypatch.setattr(cli_release, "PART_SIZE", 5 * 1024 * 1024)

    # When a folder is released with a manifest
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1", "--manifest", str(manifest))

    # Then the tarball was a multipart upload, and carries the manifest's version all the same
    assert result.code == 0, result.err
    assert s3_calls == ["models/iris/1/release.json", "models/iris/1/model.tar.gz"]
    (version,) = manifest_versions(aws)
    head = aws.s3.head_object(Bucket=BUCKET, Key="models/iris/1/model.tar.gz")
    assert head["Metadata"] == {"dropship-manifest-version": version}
    assert head["ContentType"] == "application/gzip"


def test_the_folders_release_json_is_the_manifest(aws: Account, cli: Any, model_dir: Path) -> None:
    # Given a model folder holding its release.json
    (model_dir / "release.json").write_text(json.dumps(SMOKE_MANIFEST))

    # When it is released without --manifest
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1")

    # Then that file is uploaded as the manifest, pinned, and is not in the tarball
    assert result.code == 0, result.err
    stored = aws.s3.get_object(Bucket=BUCKET, Key="models/iris/1/release.json")["Body"].read()
    assert json.loads(stored) == SMOKE_MANIFEST
    (version,) = manifest_versions(aws)
    assert aws.s3.head_object(Bucket=BUCKET, Key="models/iris/1/model.tar.gz")["Metadata"] == {
        "dropship-manifest-version": version
    }
    assert tar_names(aws) == ["code", "code/inference.py", "model.joblib"]
    # And the user is told what was packed and which manifest applies
    assert f"Packed 2 files (21 B) from {model_dir} into model.tar.gz (" in result.out
    assert f"Manifest: {model_dir / 'release.json'} (the folder's release.json; not packed)" in result.out


def test_manifest_option_wins_over_the_folders_release_json(
    aws: Account, cli: Any, model_dir: Path, manifest: Path
) -> None:
    # Given a folder whose release.json is not valid, and another manifest given with --manifest
    (model_dir / "release.json").write_text("{not json")

    # When it is released with --manifest
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1", "--manifest", str(manifest))

    # Then the --manifest file is uploaded, and the folder's is neither used nor packed
    assert result.code == 0, result.err
    stored = aws.s3.get_object(Bucket=BUCKET, Key="models/iris/1/release.json")["Body"].read()
    assert json.loads(stored) == SMOKE_MANIFEST
    assert "release.json" not in tar_names(aws)
    assert "the folder's release.json is not used, and not packed" in result.out


def test_an_invalid_release_json_in_the_folder_fails_before_anything_is_uploaded(
    aws: Account, cli: Any, model_dir: Path
) -> None:
    (model_dir / "release.json").write_text('{"colour": "blue"}')
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1")
    result.assert_error("InvalidManifest: ", "colour")
    assert objects(aws) == []


def test_a_folder_holding_a_model_tar_gz_is_refused_before_uploading(aws: Account, cli: Any, model_dir: Path) -> None:
    (model_dir / "model.tar.gz").write_bytes(b"\x1f\x8b an earlier packing")
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1")
    result.assert_error("it holds model.tar.gz, a tarball left from an earlier packing")
    assert objects(aws) == []


def small_stack(aws: Account, with_limits: bool = True, **parameters: str) -> str:
    """Another dropship stack in the account, deployed with smaller artifact limits (or none at all)."""
    import boto3
    from cli_support import REGION, STACK_TEMPLATE

    marker = {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "small-marker"}}
    template = {**STACK_TEMPLATE, "Resources": {"Marker": marker}}
    if not with_limits:
        del template["Parameters"]
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="small",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    return "small"


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"MaxArtifactMembers": "2"}, "holds 3 files and folders, over the stack's limit of 2"),
        ({"MaxUncompressedBytes": "20"}, "holds 21 B of files, over the stack's limit of 20 B"),
        ({"MaxArtifactBytes": "50"}, "over the stack's limit of 50 B (stack parameter MaxArtifactBytes)"),
    ],
)
def test_a_folder_over_the_stacks_limits_is_refused_before_uploading(
    aws: Account, cli: Any, model_dir: Path, parameters: dict[str, str], fragment: str
) -> None:
    # Given a stack deployed with a smaller limit than the folder needs
    stack = small_stack(aws, **parameters)

    # When the folder is released to it, Then it is refused with the contract's code and nothing is uploaded
    result = cli("release", str(model_dir), "--model", "iris", "--version", "1", "--stack-name", stack)
    result.assert_error("ArtifactTooLarge: ", fragment)
    assert objects(aws) == []


def test_the_limits_fall_back_to_the_templates_defaults(aws: Account, cli: Any) -> None:
    # Given a stack without the limit parameters (deployed from an older template)
    from dropship.artifact import ArtifactLimits
    from dropship.cli.stack import Stack, Target

    small_stack(aws, with_limits=False)
    limits = Stack(Target(None, "us-east-1", "small")).artifact_limits()

    # Then the template's defaults apply, which are also what Validate Artifact assumes by default
    assert limits == ArtifactLimits()
    assert limits == ArtifactLimits(
        max_compressed_bytes=10737418240, max_uncompressed_bytes=21474836480, max_members=100000
    )


def tar_names(aws: Account) -> list[str]:
    import io

    body = aws.s3.get_object(Bucket=BUCKET, Key="models/iris/1/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return tar.getnames()


def test_the_fallback_limits_are_the_templates_defaults() -> None:
    from samtranslator.yaml_helper import yaml_parse

    from dropship.artifact import ArtifactLimits

    template = yaml_parse((Path(__file__).parents[2] / "template.yaml").read_text())
    defaults = {
        str(info.description): getattr(ArtifactLimits(), name) for name, info in ArtifactLimits.model_fields.items()
    }
    assert defaults == {name: int(template["Parameters"][name]["Default"]) for name in defaults}
    assert set(defaults) == {"MaxArtifactBytes", "MaxUncompressedBytes", "MaxArtifactMembers"}
