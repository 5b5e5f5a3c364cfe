import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropship.errors import InvalidKeyError
from dropship.names import (
    MODEL_PATTERN,
    VERSION_PATTERN,
    check_model_name,
    check_version,
    guess_model_version,
    is_drop_key,
    parse_drop_key,
    released_key,
    resource_name,
)

ARN = "arn:aws:states:us-east-1:123456789012:execution:dropship-Release:0f1e2d3c"


@pytest.mark.parametrize(
    ("key", "model", "version"),
    [
        ("models/churn/3/model.tar.gz", "churn", "3"),
        ("models/fraud-v2/1.4.0/model.tar.gz", "fraud-v2", "1.4.0"),
        ("models/a/2026-11-25/model.tar.gz", "a", "2026-11-25"),
        ("models/" + "m" * 32 + "/" + "v" * 20 + "/model.tar.gz", "m" * 32, "v" * 20),
    ],
)
def test_good_drop_keys_parse(key: str, model: str, version: str) -> None:
    # Given a key of the contract's form, When parsed, Then model and version come out unchanged
    drop = parse_drop_key(key)
    assert (drop.model, drop.version) == (model, version)
    assert drop.artifact_key == key
    assert drop.manifest_key == key.replace("model.tar.gz", "release.json")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("models/Churn/3/model.tar.gz", "model name"),
        ("models/churn_x/3/model.tar.gz", "model name"),
        ("models/-churn/3/model.tar.gz", "model name"),
        ("models/churn-/3/model.tar.gz", "model name"),
        ("models/ch--urn/3/model.tar.gz", "model name"),
        ("models/9churn/3/model.tar.gz", "model name"),
        ("models/" + "m" * 33 + "/3/model.tar.gz", "model name"),
        ("models/churn/" + "v" * 21 + "/model.tar.gz", "version"),
        ("models/churn/1 0/model.tar.gz", "version"),
        ("models/churn/1_0/model.tar.gz", "version"),
        ("models/churn//model.tar.gz", "version"),
        ("models/churn/3/extra/model.tar.gz", "exactly"),
        ("models/churn\n/3/model.tar.gz", "model name"),
        ("models/churn/3\n/model.tar.gz", "version"),
        ("models/churn/../model.tar.gz", "version"),
        ("models/churn/./model.tar.gz", "version"),
        ("models/churn/.3/model.tar.gz", "version"),
        ("models/churn/3./model.tar.gz", "version"),
        ("models/churn/-3/model.tar.gz", "version"),
        ("models/churn/3-/model.tar.gz", "version"),
        ("models/churn/-/model.tar.gz", "version"),
        ("models/churn/model.tar.gz", "exactly"),
    ],
)
def test_bad_drop_keys_are_invalid_key(key: str, reason: str) -> None:
    # Given a key under models/ with a bad name, When parsed, Then InvalidKey says what is wrong
    with pytest.raises(InvalidKeyError, match=reason):
        parse_drop_key(key)


def test_only_model_tarballs_under_models_are_drop_keys() -> None:
    assert is_drop_key("models/churn/3/model.tar.gz")
    assert not is_drop_key("models/churn/3/release.json")
    assert not is_drop_key("released/churn/abc/model.tar.gz")
    assert not is_drop_key("other/churn/3/model.tar.gz")


def test_guess_model_version_is_best_effort_for_reports() -> None:
    assert guess_model_version("models/Bad_Name/7/model.tar.gz") == ("Bad_Name", "7")
    assert guess_model_version("models/x") == ("", "")


def test_resource_names_fit_sagemaker_and_are_stable_per_execution() -> None:
    # Given the longest model and version allowed
    name = resource_name("m" * 32, "1.2.3-" + "v" * 14, ARN)
    # Then the name fits SageMaker's 63 characters and its character set
    assert len(name) <= 63
    assert all(ch.isalnum() or ch == "-" for ch in name)
    assert "--" not in name
    # And it is the same for retries of one execution, different for another execution
    assert resource_name("churn", "3", ARN) == resource_name("churn", "3", ARN)
    assert resource_name("churn", "3", ARN) != resource_name("churn", "3", ARN + "x")
    assert resource_name("churn", "1.4.0", ARN).startswith("churn-1-4-0-")


def test_released_key_is_content_addressed() -> None:
    assert released_key("churn", "ab" * 32) == f"released/churn/{'ab' * 32}/model.tar.gz"


# The contract's rules (CONTRACT.md section 1), written out plainly, against the patterns and checks.

VERSION_CHARS = string.ascii_letters + string.digits + ".-"
MODEL_CHARS = string.ascii_lowercase + string.digits + "-"
# Mostly the allowed characters, plus a few that must never pass (including look-alikes and separators).
version_like = st.text(alphabet=VERSION_CHARS + "_/ \n\u0661\uff11", max_size=24)
model_like = st.text(alphabet=MODEL_CHARS + "A_. \n", max_size=36)


def contract_version(version: str) -> bool:
    return (
        1 <= len(version) <= 20
        and all(ch in VERSION_CHARS for ch in version)
        and version[0].isascii()
        and version[0].isalnum()
        and version[-1].isascii()
        and version[-1].isalnum()
    )


def contract_model(model: str) -> bool:
    return (
        1 <= len(model) <= 32
        and all(ch in MODEL_CHARS for ch in model)
        and model[0] in string.ascii_lowercase
        and model[-1] != "-"
        and "--" not in model
    )


@given(version_like)
def test_a_version_is_accepted_exactly_when_the_contract_allows_it(version: str) -> None:
    assert (re.fullmatch(VERSION_PATTERN, version) is not None) is contract_version(version)
    if contract_version(version):
        assert check_version(version) == version
    else:
        with pytest.raises(InvalidKeyError, match="starting and ending with a letter or digit"):
            check_version(version)


@given(model_like)
def test_a_model_name_is_accepted_exactly_when_the_contract_allows_it(model: str) -> None:
    accepted = re.fullmatch(MODEL_PATTERN, model) is not None and len(model) <= 32
    assert accepted is contract_model(model)
    if not accepted:
        with pytest.raises(InvalidKeyError, match="model name"):
            check_model_name(model)


@given(
    st.from_regex(MODEL_PATTERN, fullmatch=True).filter(lambda m: len(m) <= 32 and m.isascii()),
    st.from_regex(VERSION_PATTERN, fullmatch=True).filter(str.isascii),
    st.text(min_size=1, max_size=200),
)
def test_every_valid_key_parses_and_names_fit_sagemaker(model: str, version: str, execution_arn: str) -> None:
    drop = parse_drop_key(f"models/{model}/{version}/model.tar.gz")
    assert (drop.model, drop.version) == (model, version)
    name = resource_name(model, version, execution_arn)
    assert re.fullmatch(r"[a-zA-Z0-9](-?[a-zA-Z0-9])*", name), name  # SageMaker's pattern for these names
    assert len(name) <= 63
    assert name.startswith(model + "-")
