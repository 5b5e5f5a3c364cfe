"""The default path over real HTTP: a scikit-learn model in model.joblib and no inference.py."""

from __future__ import annotations

import io
import json
import socket
from typing import TYPE_CHECKING

import numpy as np
import pytest
import requests

if TYPE_CHECKING:
    from tests.container.conftest import ServeProcess


ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # an iris setosa and an iris virginica
EXPECTED = [0, 2]
SIX_MIB = 6 * 1024 * 1024


def invoke(server: ServeProcess, body: bytes, content_type: str = "application/json", **headers: str):
    return requests.post(
        server.url + "/invocations", data=body, headers={"Content-Type": content_type, **headers}, timeout=30
    )


def test_ping_is_healthy_once_loaded(sklearn_server: ServeProcess) -> None:
    response = requests.get(sklearn_server.url + "/ping", timeout=5)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "answer"),
    [(json.dumps(ROWS), EXPECTED), (json.dumps({"instances": ROWS}), {"predictions": EXPECTED})],
    ids=["list-of-rows", "instances"],
)
def test_json_in_json_out(sklearn_server: ServeProcess, body: str, answer: object) -> None:
    response = invoke(sklearn_server, body.encode())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == answer


def test_smoke_test_default_sample(sklearn_server: ServeProcess) -> None:
    response = invoke(sklearn_server, b'{"instances": [[0.0, 0.0, 0.0, 0.0]]}')
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1


def test_content_type_parameters_and_case_are_ignored(sklearn_server: ServeProcess) -> None:
    response = invoke(sklearn_server, json.dumps(ROWS).encode(), "Application/JSON; charset=utf-8")
    assert response.status_code == 200
    assert response.json() == EXPECTED


def test_csv_in_csv_out(sklearn_server: ServeProcess) -> None:
    body = "\n".join(",".join(map(str, row)) for row in ROWS).encode()
    response = invoke(sklearn_server, body, "text/csv", Accept="text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv"
    assert response.text.split() == ["0", "2"]


def test_npy_in_npy_out(sklearn_server: ServeProcess) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array(ROWS))
    response = invoke(sklearn_server, buffer.getvalue(), "application/x-npy", Accept="application/x-npy")
    assert response.status_code == 200
    assert np.load(io.BytesIO(response.content)).tolist() == EXPECTED


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("text/csv;q=0.9, application/json;q=0.2", "text/csv"),
        ("application/json;q=0.2, text/csv;q=0.9", "text/csv"),
        ("image/png, application/x-npy;q=0.5", "application/x-npy"),
        ("*/*", "application/json"),
        ("text/*", "text/csv"),
        ("", "application/json"),
    ],
)
def test_accept_q_values_and_wildcards(sklearn_server: ServeProcess, accept: str, content_type: str) -> None:
    response = invoke(sklearn_server, json.dumps(ROWS).encode(), Accept=accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type


def test_406_unsupported_accept(sklearn_server: ServeProcess) -> None:
    response = invoke(sklearn_server, json.dumps(ROWS).encode(), Accept="image/png, text/html;q=0.5")
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "NotAcceptable"
    assert "image/png" in response.json()["error"]["message"]


def test_415_unsupported_content_type(sklearn_server: ServeProcess) -> None:
    response = invoke(sklearn_server, b"<rows/>", "application/xml")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UnsupportedMediaType"
    assert "application/xml" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"[[5.1, 3.5", "application/json", "not valid JSON"),
        (b'{"rows": []}', "application/json", "instances"),
        (b"[[1, 2, 3]]", "application/json", "expected 4 features"),
        (b"a,b,c,d\n", "text/csv", "not numeric CSV"),
        (b"\x93NUMPY-broken", "application/x-npy", ".npy"),
    ],
)
def test_400_bad_body(sklearn_server: ServeProcess, body: bytes, content_type: str, fragment: str) -> None:
    response = invoke(sklearn_server, body, content_type)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert fragment in response.json()["error"]["message"]


def test_a_6_mib_request_is_served(sklearn_server: ServeProcess) -> None:
    body = json.dumps(ROWS).encode()
    body += b" " * (SIX_MIB - len(body))  # JSON allows trailing whitespace
    assert len(body) == SIX_MIB
    response = invoke(sklearn_server, body)
    assert response.status_code == 200
    assert response.json() == EXPECTED


def _raw_exchange(server: ServeProcess, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def test_413_before_the_body_is_read(sklearn_server: ServeProcess) -> None:
    # Only the headers are sent: the answer must come without waiting for the announced body.
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {SIX_MIB + 1}\r\n\r\n".encode()
    )
    response = _raw_exchange(sklearn_server, head)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"PayloadTooLarge" in response or b"content-length" in response.lower()


def test_413_for_an_oversized_chunked_body(sklearn_server: ServeProcess) -> None:
    size = SIX_MIB + 1
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    body = f"{size:x}\r\n".encode() + b" " * size + b"\r\n0\r\n\r\n"
    try:
        response = _raw_exchange(sklearn_server, head, body)
    except ConnectionResetError:
        pytest.skip("the server closed the connection before the client finished sending")
    assert response.startswith(b"HTTP/1.1 413"), response[:200]


def test_unknown_path_and_method(sklearn_server: ServeProcess) -> None:
    assert requests.get(sklearn_server.url + "/nope", timeout=5).status_code == 404
    response = requests.get(sklearn_server.url + "/invocations", timeout=5)
    assert response.status_code == 405
    assert response.json()["error"]["code"]


def test_execution_parameters(sklearn_server: ServeProcess) -> None:
    response = requests.get(sklearn_server.url + "/execution-parameters", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}


def test_workers_setting_starts_that_many_inference_processes(sklearn_server: ServeProcess) -> None:
    lines = sklearn_server.log_lines()
    http = [line for line in lines if line["message"].startswith("Booting worker with pid")]
    assert len(http) == 1  # one HTTP process balances the requests
    loaded = {line["pid"] for line in lines if line.get("event") == "model_loaded"}
    assert len(loaded) == 2  # each inference process loaded (and warmed) the model before /ping said 200
    assert http[0]["pid"] not in loaded  # the HTTP process runs no model code


def test_every_log_line_is_structured(sklearn_server: ServeProcess) -> None:
    assert invoke(sklearn_server, b"x", "application/xml").status_code == 415
    lines = sklearn_server.log_lines()  # raises on any line that is not JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    rejected = [line for line in lines if line.get("event") == "invocation_rejected"]
    assert any(line["status"] == 415 for line in rejected)
