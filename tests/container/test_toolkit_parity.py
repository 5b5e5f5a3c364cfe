"""Differential test: the same scripts and requests, answered by SageMaker's inference toolkit and by dropship.

The reference is the published sagemaker-inference package's `Transformer` (with the scikit-learn
image's default handler), driven in-process; dropship is the real `container/serve` over HTTP. Every
request the toolkit answers with a 2xx gets the same status, body and Content-Type from dropship; a
request it fails with an error status fails with the same status class. The few requests where
dropship answers differently on purpose are listed in DIFFERENT, each with its reason: there the
toolkit fails with a 500 (or, once, misreads a CSV column) and dropship answers or says what is wrong.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.container.parity import Answer, ScikitLearnImageHandler, Toolkit, http_answer

if TYPE_CHECKING:
    from tests.container.conftest import ServeProcess

PARITY = Path(__file__).resolve().parent / "samples" / "parity"

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # a setosa and a virginica
JSON_ROWS = json.dumps(ROWS).encode()
CSV_ROWS = b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3"
JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}
NPY = {"Content-Type": "application/x-npy"}


def npy(array: object) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


@dataclass(frozen=True)
class Request:
    id: str
    server: str  # a key of SERVERS
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Endpoint:
    program: str
    env: tuple[tuple[str, str], ...] = ()


SERVERS = {
    "model_fn_only": Endpoint("parity_sklearn_model_fn_only"),
    "model_fn_only_csv_default": Endpoint(
        "parity_sklearn_model_fn_only", (("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv"),)
    ),
    "text_parsing": Endpoint("parity_sklearn_text_parsing"),
    "toolkit_helpers": Endpoint("parity_toolkit_helpers"),
    "transform": Endpoint("parity_transform"),
}


def _same(server: str, *requests: tuple[str, bytes, dict[str, str]]) -> list[Request]:
    return [Request(f"{server}-{name}", server, body, headers) for name, body, headers in requests]


SAME = [
    *_same(
        "model_fn_only",
        ("json-rows-no-accept", JSON_ROWS, JSON),
        ("json-rows-any", JSON_ROWS, {**JSON, "Accept": "*/*"}),
        ("json-rows-json", JSON_ROWS, {**JSON, "Accept": "application/json"}),
        ("json-rows-csv", JSON_ROWS, {**JSON, "Accept": "text/csv"}),
        ("json-rows-npy", JSON_ROWS, {**JSON, "Accept": "application/x-npy"}),
        ("json-one-row", json.dumps(ROWS[1]).encode(), JSON),
        ("json-integers", b"[[5, 3, 1, 0], [7, 3, 5, 2]]", JSON),
        ("csv-rows", CSV_ROWS, {**CSV, "Accept": "text/csv"}),
        ("csv-rows-final-newline", CSV_ROWS + b"\n", {**CSV, "Accept": "text/csv"}),
        ("csv-one-row", b"6.7,3.0,5.2,2.3", {**CSV, "Accept": "application/json"}),
        ("csv-spaces", b"5.1, 3.5, 1.4, 0.2\n6.7, 3.0, 5.2, 2.3\n", CSV),
        ("npy-rows", npy(ROWS), {**NPY, "Accept": "application/x-npy"}),
        ("npy-one-row", npy(np.array(ROWS[0], dtype=np.float32)), NPY),
        ("npy-rows-csv", npy(ROWS), {**NPY, "Accept": "text/csv"}),
        ("predict-fails", b'[["a", "b", "c", "d"]]', JSON),
    ),
    *_same(
        "model_fn_only_csv_default",
        ("no-accept", JSON_ROWS, JSON),
        ("any", JSON_ROWS, {**JSON, "Accept": "*/*"}),
        ("json", JSON_ROWS, {**JSON, "Accept": "application/json"}),
    ),
    *_same(
        "text_parsing",
        ("csv-pandas-json", CSV_ROWS, {**CSV, "Accept": "application/json"}),
        ("csv-pandas-csv-bytes", CSV_ROWS, {**CSV, "Accept": "text/csv"}),
        ("csv-pandas-npy-tuple", CSV_ROWS, {**CSV, "Accept": "application/x-npy"}),
        ("csv-pandas-no-accept", CSV_ROWS, CSV),
        ("json-rows-key", json.dumps({"rows": ROWS}).encode(), JSON),
        ("text-plain-split", b"5.1 3.5 1.4 0.2\n6.7 3.0 5.2 2.3\n", {"Content-Type": "text/plain"}),
        ("bytes-replace", b"5.1;3.5;1.4;0.2", {"Content-Type": "application/x-semicolons"}),
        ("output-fn-refuses", CSV_ROWS, {**CSV, "Accept": "application/xml"}),
    ),
    *_same(
        "toolkit_helpers",
        ("json", JSON_ROWS, JSON),
        ("json-csv", JSON_ROWS, {**JSON, "Accept": "text/csv"}),
        ("csv-npy", CSV_ROWS, {**CSV, "Accept": "application/x-npy"}),
        ("npy", npy(ROWS), NPY),
        ("status-code-error", b"", {"Content-Type": "application/x-refuse"}),
        ("predict-fails", b"[[1], [2]]", JSON),
    ),
    *_same(
        "transform",
        ("json", JSON_ROWS, {**JSON, "Accept": "application/json"}),
        ("json-no-accept", JSON_ROWS, JSON),
        ("csv-str", CSV_ROWS, {**CSV, "Accept": "text/csv"}),
        ("octet-stream-bytes", np.array(ROWS).tobytes(), {"Content-Type": "application/octet-stream"}),
    ),
]


@dataclass(frozen=True)
class Different:
    request: Request
    why: str
    reference_status: int
    status: int
    check: Callable[[Answer], bool] = lambda answer: True


def _error(code: str, fragment: str = "") -> Callable[[Answer], bool]:
    def check(answer: Answer) -> bool:
        error = json.loads(answer.body)["error"]
        return bool(error["code"] == code and fragment in error["message"])

    return check


DIFFERENT = [
    Different(
        Request("instances", "model_fn_only", json.dumps({"instances": ROWS}).encode(), JSON),
        "dropship reads {'instances': rows} (the stack's default smoke test) and answers {'predictions': ...}",
        500,
        200,
        lambda answer: json.loads(answer.body) == {"predictions": [0, 2]},
    ),
    Different(
        Request("accept-list", "model_fn_only", JSON_ROWS, {**JSON, "Accept": "text/csv, application/json"}),
        "the image's output_fn takes the whole Accept header as one media type; dropship picks one",
        500,
        200,
        lambda answer: answer.body == b"0\n2\n" and answer.content_type == "text/csv",
    ),
    Different(
        Request("charset", "model_fn_only", JSON_ROWS, {"Content-Type": "application/json; charset=utf-8"}),
        "the toolkit compares the whole Content-Type header; dropship its media type",
        500,
        200,
        lambda answer: answer.body == b"[0, 2]",
    ),
    Different(
        Request("no-content-type", "model_fn_only", JSON_ROWS, {}),
        "a missing Content-Type is JSON, as in the framework images' server (the toolkit has no default)",
        500,
        200,
        lambda answer: answer.body == b"[0, 2]",
    ),
    Different(
        Request("csv-column", "model_fn_only", b"5.1\n3.5\n1.4\n0.2\n", CSV),
        "a CSV body is one row per line, as the XGBoost image reads it; the toolkit squeezes a column into one row",
        200,
        400,
        _error("BadRequest", "expected 4 features per row, got 1"),
    ),
    Different(
        Request("bad-json", "model_fn_only", b"[[5.1, 3.5", JSON),
        "a body that cannot be decoded is the client's error",
        500,
        400,
        _error("BadRequest", "not valid JSON"),
    ),
    Different(
        Request("not-numbers", "model_fn_only", b"a,b,c,d\n", CSV),
        "the toolkit reads text as NaN and the model fails; dropship says which field is not a number",
        500,
        400,
        _error("BadRequest", "'a'"),
    ),
    Different(
        Request("wrong-width", "model_fn_only", b"[[1, 2, 3]]", JSON),
        "rows of the wrong width are the client's error",
        500,
        400,
        _error("BadRequest", "expected 4 features"),
    ),
    Different(
        Request("xml", "model_fn_only", b"<rows/>", {"Content-Type": "application/xml"}),
        "no decoder for the Content-Type",
        500,
        415,
        _error("UnsupportedMediaType", "application/xml"),
    ),
    Different(
        Request("png", "model_fn_only", JSON_ROWS, {**JSON, "Accept": "image/png"}),
        "no encoder for the Accept type",
        500,
        406,
        _error("NotAcceptable", "image/png"),
    ),
    Different(
        Request("script-value-error", "text_parsing", b"x", {"Content-Type": "application/x-unknown"}),
        "input_fn raising ValueError means the body cannot be read",
        500,
        400,
        _error("BadRequest", "not supported by script"),
    ),
    Different(
        Request("unsupported-format-in", "toolkit_helpers", b"x", {"Content-Type": "text/plain"}),
        "input_fn raising the toolkit's UnsupportedFormatError",
        500,
        415,
        _error("UnsupportedMediaType"),
    ),
    Different(
        Request("unsupported-format-out", "toolkit_helpers", JSON_ROWS, {**JSON, "Accept": "text/plain"}),
        "output_fn raising the toolkit's UnsupportedFormatError for every acceptable type",
        500,
        406,
        _error("NotAcceptable"),
    ),
]


@pytest.fixture(scope="module")
def endpoints(
    sklearn_model_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
    start_serve: Callable[..., ServeProcess],
) -> Iterator[dict[str, tuple[Toolkit, ServeProcess]]]:
    """Each endpoint of SERVERS twice: in the toolkit, in-process, and as a dropship serve process."""
    started = {}
    for name, endpoint in SERVERS.items():
        model_dir = tmp_path_factory.mktemp(name)
        shutil.copy(sklearn_model_file, model_dir / "model.joblib")
        (model_dir / "code").mkdir()
        shutil.copy(PARITY / f"{endpoint.program}.py", model_dir / "code" / f"{endpoint.program}.py")
        env = dict(endpoint.env)
        server = start_serve(model_dir, {**env, "SAGEMAKER_PROGRAM": f"{endpoint.program}.py"})
        started[name] = (model_dir, endpoint, env, server)
    answering = {}
    for name, (model_dir, endpoint, env, server) in started.items():
        server.wait_healthy()
        answering[name] = (Toolkit(model_dir, endpoint.program, ScikitLearnImageHandler(), env), server)
    yield answering


@pytest.mark.parametrize("request_", SAME, ids=lambda r: r.id)
def test_dropship_answers_as_the_toolkit(endpoints: dict[str, tuple[Toolkit, ServeProcess]], request_: Request) -> None:
    toolkit, server = endpoints[request_.server]
    expected = toolkit.invoke(request_.body, request_.headers)
    answer = http_answer(server, request_.body, request_.headers)
    if expected.status < 300:
        assert answer == expected
    else:  # the same status; dropship's body is its JSON error, never the toolkit's traceback
        assert answer.status == expected.status, answer
        assert b"Traceback" not in answer.body and json.loads(answer.body)["error"]["message"]
        assert b"must not see" not in answer.body


@pytest.mark.parametrize("case", DIFFERENT, ids=lambda c: c.request.id)
def test_where_dropship_answers_otherwise(endpoints: dict[str, tuple[Toolkit, ServeProcess]], case: Different) -> None:
    toolkit, server = endpoints[case.request.server]
    expected = toolkit.invoke(case.request.body, case.request.headers)
    answer = http_answer(server, case.request.body, case.request.headers)
    assert expected.status == case.reference_status, (case.why, expected)
    assert answer.status == case.status, (case.why, answer)
    assert case.check(answer), (case.why, answer)
