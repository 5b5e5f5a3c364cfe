"""`code/requirements.txt`: read as pip reads it, package sources refused, installed once by `serve`.

Installs go into a Python environment made for the test (as the local stack makes one per model), never
into the one running the tests.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from dropship.local.environments import ModelEnvironments
from dropship_serve import requirements

if TYPE_CHECKING:
    from tests.container.conftest import ServeProcess

REPO = Path(__file__).resolve().parents[2]
StartServe = Callable[..., "ServeProcess"]
MakeModelDir = Callable[..., Path]
MISSING_PACKAGE = "dropship-test-package-that-does-not-exist==1.0"

FROM_A_WHEEL = """\
import dropship_test_wheel


def model_fn(model_dir):
    return dropship_test_wheel.GREETING


def transform_fn(model, body, content_type, accept):
    return '{"greeting": "%s"}' % model, "application/json"
"""


def _events(server: ServeProcess, event: str) -> list[dict]:
    return [line for line in server.log_lines() if line.get("event") == event]


def _write(directory: Path, text: str, name: str = "requirements.txt") -> Path:
    path = directory / "code" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def model_python(tmp_path: Path) -> Callable[[Path], str]:
    """The python of a fresh environment for a requirements file, as the local stack makes it."""
    environments = ModelEnvironments(tmp_path / "cache", REPO / "container" / "requirements.txt")
    return lambda path: environments.python_for(path, sys.executable)


def build_wheel(directory: Path, name: str = "dropship_test_wheel", version: str = "1.0") -> Path:
    """A pure-Python wheel made here, for installs that need no index."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "GREETING = 'hello from a wheel'\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


# -- reading the file ------------------------------------------------------------------------------------

REFUSED = [
    ("--index-url https://packages.example.invalid/simple", "--index-url"),
    ("-i https://packages.example.invalid/simple", "-i (--index-url)"),
    ("--extra-index-url=https://packages.example.invalid/simple", "--extra-index-url"),
    ("--find-links ./wheels", "--find-links"),
    ("-f wheels", "-f (--find-links)"),
    ("--trusted-host packages.example.invalid", "--trusted-host"),
    ("--no-index", "--no-index"),
    ("-e ./features", "-e (--editable)"),
    ("git+https://git.example.invalid/team/features.git@v1#egg=features", "the VCS link"),
    ("features @ https://files.example.invalid/features-1.0-py3-none-any.whl", "the direct URL"),
    ("https://files.example.invalid/features-1.0.tar.gz", "the URL"),
    ("./vendor/features", "the local path"),
    ("features-1.0-py3-none-any.whl", "the local path"),
    ("-r https://files.example.invalid/requirements.txt", "-r with a URL"),
]


@pytest.mark.parametrize(("line", "named"), REFUSED, ids=[named for _, named in REFUSED])
def test_a_package_source_is_refused_naming_the_file_line_and_option(tmp_path: Path, line: str, named: str) -> None:
    path = _write(tmp_path, f"pandas>=2\n# the team's own package\n{line}\nscikit-learn\n")
    with pytest.raises(requirements.RefusedRequirements) as refused:
        requirements.read(str(path), allow_sources=False)
    assert str(refused.value).startswith(f"code/requirements.txt line 3: {named}")
    assert "AllowPackageSources" in str(refused.value)
    # unless the stack allows package sources
    assert len(requirements.read(str(path), allow_sources=True).requirements) >= 2


def test_a_refused_line_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "-r extra.txt\npandas\n")
    _write(tmp_path, "six\n--extra-index-url https://packages.example.invalid/simple\n", name="extra.txt")
    with pytest.raises(requirements.RefusedRequirements, match=r"^code/extra\.txt line 2: --extra-index-url"):
        requirements.read(str(path), allow_sources=False)


def test_a_missing_included_file_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "pandas\n-r base.txt\n")
    with pytest.raises(requirements.RefusedRequirements, match=r"^code/requirements\.txt line 2: -r base\.txt: no"):
        requirements.read(str(path), allow_sources=False)


_NAMES = st.sampled_from(["pandas", "scikit-learn", "six", "Foo_Bar.baz", "inflection"])
_REQUIREMENT = st.builds(
    lambda name, extras, spec, marker, hashes, comment: f"{name}{extras}{spec}{marker}{hashes}{comment}",
    _NAMES,
    st.sampled_from(["", "[plot]", "[a,b]"]),
    st.sampled_from(["", ">=1.0", "==2.3.3", "~=1.2,<2", " >= 1"]),
    st.sampled_from(["", '; python_version >= "3.8"', " ; sys_platform == 'linux'"]),
    st.sampled_from(["", " --hash=sha256:" + "a" * 64, " \\\n    --hash=sha256:" + "b" * 64]),
    st.sampled_from(["", "  # why we pin it", "\t# tab then comment"]),
)
_OTHER = st.sampled_from(["", "   ", "# a comment", "  # indented comment", "--prefer-binary", "--pre", "# ends \\"])


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.one_of(_REQUIREMENT, _OTHER), max_size=12), refused_at=st.integers(0, 12), data=st.data())
def test_lines_are_read_as_pip_reads_them_and_a_source_anywhere_is_refused(
    lines: list[str], refused_at: int, data: st.DataObject
) -> None:
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    with tempfile.TemporaryDirectory() as scratch:
        path = _write(Path(scratch), "\n".join(lines) + "\n")
        ours = [
            (line.number, requirements._requirement_part(line.text))
            for line, _ in requirements.read(str(path), allow_sources=False).requirements
        ]
        theirs = []
        for parsed in parse_requirements(str(path), PipSession()):
            number = re.search(r"\(line (\d+)\)$", parsed.comes_from or "")
            assert number is not None
            theirs.append((int(number.group(1)), parsed.requirement.strip()))
        assert ours == theirs

        # a package source on any line is refused with the number pip gives that line
        index = min(refused_at, len(lines))
        option, named = data.draw(st.sampled_from(REFUSED[:8]))
        with_source = [*lines[:index], option, *lines[index:]]
        path.write_text("\n".join(with_source) + "\n")
        expected_line = sum(line.count("\n") + 1 for line in lines[:index]) + 1
        with pytest.raises(requirements.RefusedRequirements) as refused:
            requirements.read(str(path), allow_sources=False)
        assert str(refused.value).startswith(f"code/requirements.txt line {expected_line}: {named}")


def test_pip_error_line_is_pips_first_error() -> None:
    output = (
        "Collecting x\n"
        "ERROR: Could not find a version that satisfies the requirement x==9 (from versions: 1.0)\n"
        "ERROR: No matching distribution found for x==9\n"
    )
    assert requirements.pip_error_line(output).startswith("ERROR: Could not find a version")
    assert requirements.pip_error_line("  something odd\n\n") == "something odd"


# -- serve installing them ---------------------------------------------------------------------------------


def test_a_refused_package_source_stops_serve_before_any_pip_run(
    make_model_dir: MakeModelDir, start_serve: StartServe
) -> None:
    model_dir = make_model_dir(
        files={"code/requirements.txt": "pandas\n--index-url https://packages.example.invalid/simple\n"}
    )
    server = start_serve(model_dir)
    assert server.wait_exit(timeout=30) == 3
    [failure] = _events(server, "model_load_failed")
    assert failure["message"].startswith("code/requirements.txt line 2: --index-url is refused")
    assert not _events(server, "requirements_install")
    assert server.log_lines()[-1]["event"] == "model_load_failed"


def test_a_failed_install_stops_serve_with_pips_error_line_first(
    make_model_dir: MakeModelDir, start_serve: StartServe, model_python: Callable[[Path], str]
) -> None:
    model_dir = make_model_dir(files={"code/requirements.txt": f"scikit-learn\n{MISSING_PACKAGE}\n"})
    server = start_serve(model_dir, python=model_python(model_dir / "code" / "requirements.txt"))
    assert server.wait_exit(timeout=120) == 3
    [failure] = _events(server, "model_load_failed")
    assert failure["message"].startswith(
        f"ERROR: Could not find a version that satisfies the requirement {MISSING_PACKAGE}"
    ), failure["message"]
    assert failure["message"].endswith("(pip install -r code/requirements.txt failed)")
    [install] = _events(server, "requirements_install")
    assert install["unsatisfied"] == [MISSING_PACKAGE]  # scikit-learn: the image has it
    assert _events(server, "requirements_install_failed")[0]["output"]


def test_requirements_install_into_the_serving_environment_once(
    make_model_dir: MakeModelDir, start_serve: StartServe, model_python: Callable[[Path], str]
) -> None:
    # Given a script importing a package the image does not have, listed with one it has
    model_dir = make_model_dir("inflection")
    python = model_python(model_dir / "code" / "requirements.txt")

    # When serve starts in the model's environment, Then pip installs only what is missing, and it serves
    first = start_serve(model_dir, python=python)
    first.wait_healthy(timeout=120)
    [install] = _events(first, "requirements_install")
    assert install["unsatisfied"] == ["inflection==0.5.1"]
    assert _events(first, "requirements_installed")
    reply = requests.post(first.url + "/invocations", json={"words": ["device_type"]}, timeout=10)
    assert reply.json() == {"camelized": ["DeviceType"]}
    # into the model's environment, not the one running the tests
    assert importlib.util.find_spec("inflection") is None
    assert list(Path(python).parent.parent.glob("lib/python*/site-packages/inflection*"))
    first.stop()

    # When it starts again with the same requirements, Then nothing is installed
    second = start_serve(model_dir, python=python)
    second.wait_healthy(timeout=60)
    assert _events(second, "requirements_satisfied")
    assert not _events(second, "requirements_install")


def test_allowed_sources_install_from_a_wheelhouse_and_leave_what_the_image_has(
    make_model_dir: MakeModelDir, start_serve: StartServe, model_python: Callable[[Path], str]
) -> None:
    # Given a team's wheelhouse next to the script, and lines met by the image and its stand-ins
    lines = ["--no-index", "--find-links wheels", "sagemaker-containers>=2", "xgboost==3.0.5"]
    lines.append("dropship-test-wheel==1.0")
    model_dir = make_model_dir(
        files={"code/inference.py": FROM_A_WHEEL, "code/requirements.txt": "\n".join(lines) + "\n"}
    )
    build_wheel(model_dir / "code" / "wheels")
    python = model_python(model_dir / "code" / "requirements.txt")

    # When the stack allows package sources, Then only the missing package is installed, from the wheelhouse
    # (with --no-index, pip could not have found sagemaker-containers or xgboost: it was not asked to)
    server = start_serve(model_dir, {"DROPSHIP_ALLOW_PACKAGE_SOURCES": "true"}, python=python)
    server.wait_healthy(timeout=120)
    [install] = _events(server, "requirements_install")
    assert install["unsatisfied"] == ["dropship-test-wheel==1.0"]
    reply = requests.post(server.url + "/invocations", data=json.dumps({}), timeout=10)
    assert reply.json() == {"greeting": "hello from a wheel"}
