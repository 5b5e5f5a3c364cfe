"""What Validate Artifact resolves from the manifest and the stack: image prefixes at a boundary, the stack's own
variables, and the wait's checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropship.artifact import ArtifactLimits
from dropship.errors import ImageNotAllowedError
from dropship.manifest import Manifest
from dropship.validate import ReleaseDefaults, image_matches_prefix, resolve_deployment

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DEFAULT_IMAGE = f"{REGISTRY}/dropship-serve:1"


def defaults(*prefixes: str) -> ReleaseDefaults:
    return ReleaseDefaults(
        image_uri=DEFAULT_IMAGE,
        allowed_image_prefixes=prefixes,
        instance_type="ml.m5.large",
        instance_count=1,
        smoke_body="{}",
        smoke_content_type="application/json",
        limits=ArtifactLimits(),
        poll_interval_s=1,
        endpoint_check_s=60,
        endpoint_timeout_s=60,
        lock_timeout_s=60,
    )


@pytest.mark.parametrize(
    ("prefix", "image"),
    [
        (f"{REGISTRY}/", f"{REGISTRY}/serve:1.0"),
        (REGISTRY, f"{REGISTRY}/serve:1.0"),
        (REGISTRY, f"{REGISTRY}:443/serve:1.0"),
        (f"{REGISTRY}/team/serve", f"{REGISTRY}/team/serve:2"),
        (f"{REGISTRY}/team/serve", f"{REGISTRY}/team/serve@sha256:{'a' * 64}"),
        (f"{REGISTRY}/team", f"{REGISTRY}/team/serve:2"),
        (f"{REGISTRY}/team/serve:", f"{REGISTRY}/team/serve:2"),
    ],
)
def test_images_inside_an_allowed_registry_or_repository_are_used(prefix: str, image: str) -> None:
    deployment = resolve_deployment(Manifest(image_uri=image), defaults(prefix))
    assert deployment.image_uri == image


@pytest.mark.parametrize(
    ("prefix", "image"),
    [
        (REGISTRY, f"{REGISTRY}.evil.io/x:1"),
        (REGISTRY, f"{REGISTRY}evil.io/x:1"),
        (f"{REGISTRY}/repo", f"{REGISTRY}/repo-evil:1"),
        (f"{REGISTRY}/repo", f"{REGISTRY}/repository:1"),
        (f"{REGISTRY}/team", f"{REGISTRY}/team2/serve:1"),
        (f"{REGISTRY}/", f"evil.io/{REGISTRY}/x:1"),
    ],
)
def test_look_alike_registries_and_repositories_are_not_allowed(prefix: str, image: str) -> None:
    with pytest.raises(ImageNotAllowedError) as raised:
        resolve_deployment(Manifest(image_uri=image), defaults(prefix))
    message = str(raised.value)
    assert image in message
    assert prefix in message
    assert "AllowedImagePrefixes" in message
    assert "not ending in '/', ':' or '@' must be followed by one of them" in message


def test_without_an_image_in_the_manifest_the_stack_default_is_used_unchecked() -> None:
    assert resolve_deployment(Manifest(), defaults()).image_uri == DEFAULT_IMAGE


def test_any_of_several_prefixes_allows_an_image() -> None:
    allowed = defaults("public.ecr.aws/acme", f"{REGISTRY}/")
    assert resolve_deployment(Manifest(image_uri="public.ecr.aws/acme/serve:1"), allowed).image_uri
    assert resolve_deployment(Manifest(image_uri=f"{REGISTRY}/x:1"), allowed).image_uri
    with pytest.raises(ImageNotAllowedError):
        resolve_deployment(Manifest(image_uri="public.ecr.aws/acme-evil/serve:1"), allowed)


image_text = st.text(alphabet="abc./:@-", min_size=1, max_size=12)


@given(prefix=image_text, rest=st.text(alphabet="abc./:@-", max_size=12))
def test_a_prefix_admits_an_image_only_at_a_boundary(prefix: str, rest: str) -> None:
    # Given any image that starts with the prefix, When matched, Then it is allowed exactly when
    # the prefix ends a registry, repository or tag boundary: it ends with, or is followed by, '/', ':' or '@'
    # (or nothing follows).
    boundary = prefix[-1] in "/:@" or rest == "" or rest[0] in "/:@"
    assert image_matches_prefix(prefix + rest, prefix) is boundary


@given(prefix=image_text, image=image_text)
def test_an_image_not_starting_with_the_prefix_is_never_admitted(prefix: str, image: str) -> None:
    if not image.startswith(prefix):
        assert not image_matches_prefix(image, prefix)


def test_an_empty_prefix_admits_nothing() -> None:
    assert not image_matches_prefix(f"{REGISTRY}/x:1", "")


def test_the_stack_alone_lets_requirements_name_their_own_package_sources() -> None:
    # The container refuses --index-url and the like in code/requirements.txt unless the model carries this
    # variable, which only the stack sets (the manifest cannot set DROPSHIP_* variables).
    allowed = defaults(f"{REGISTRY}/").model_copy(update={"allow_package_sources": True})
    assert resolve_deployment(Manifest(), allowed).environment == {"DROPSHIP_ALLOW_PACKAGE_SOURCES": "true"}
    assert resolve_deployment(Manifest(), defaults(f"{REGISTRY}/")).environment == {}


def test_the_waits_own_looks_end_with_the_endpoint_timeout() -> None:
    from dropship.release import aligned_check

    assert aligned_check(900, 1800) == 900
    assert aligned_check(300, 1000) == 250  # four looks: the last at 1000 s
    assert aligned_check(3, 25) == 3 and aligned_check(900, 60) == 60
