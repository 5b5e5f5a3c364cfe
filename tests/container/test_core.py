"""The HTTP-free core: content negotiation, hook signatures and error mapping, without a server."""

from __future__ import annotations

import io
import json
import logging
import types

import numpy as np
import pytest

from dropship_serve import core, defaults
from dropship_serve.core import Handler, accept_candidates, media_type, parse_accept, resolve_hooks
from dropship_serve.errors import (
    BadRequestError,
    ModelError,
    ModelLoadError,
    UnsupportedAcceptError,
    UnsupportedContentTypeError,
)
from dropship_serve.settings import Settings, SettingsError

DEFAULTS = defaults.ACCEPTS


def test_media_type_ignores_parameters_and_case() -> None:
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert media_type(None) == ""


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("text/csv;q=0.5, application/json", ["application/json", "text/csv"]),
        ("*/*;q=0.1, text/csv", ["text/csv", "*/*"]),
        ("text/*, text/csv", ["text/csv", "text/*"]),  # same q: the more specific first
        ("application/json;q=0, text/csv", ["text/csv"]),
        ("text/csv;q=oops, application/json", ["application/json"]),
        ("*", ["*/*"]),
    ],
)
def test_parse_accept_orders_by_q_then_specificity(header: str, expected: list[str]) -> None:
    assert parse_accept(header) == expected


@pytest.mark.parametrize(
    ("header", "supported", "expected"),
    [
        (None, DEFAULTS, ["application/json"]),
        ("*/*", DEFAULTS, ["application/json"]),
        ("application/*", DEFAULTS, ["application/json"]),
        ("text/*", DEFAULTS, ["text/csv"]),
        ("image/png", DEFAULTS, []),
        ("image/png, */*;q=0.1", DEFAULTS, ["application/json"]),
        ("image/png, text/plain;q=0.5", None, ["image/png", "text/plain"]),
        ("*/*", None, ["application/json"]),
    ],
)
def test_accept_candidates(header: str | None, supported: tuple[str, ...] | None, expected: list[str]) -> None:
    assert accept_candidates(header, "application/json", supported) == expected


def _handler(**hooks: object) -> Handler:
    module = types.ModuleType("inference")
    for name, fn in hooks.items():
        setattr(module, name, fn)
    resolved = resolve_hooks(module, defaults)
    settings = Settings(model_dir="/nonexistent")
    return Handler(settings, resolved, model=None, program="inference.py")


def test_context_is_passed_only_to_hooks_that_take_it() -> None:
    seen = {}

    def input_fn(body, content_type, context):
        seen["attributes"] = context.custom_attributes
        return body

    def predict_fn(data, model):
        return data

    def output_fn(prediction, accept, context=None):
        context.set_custom_attributes("answered")
        return prediction, "application/octet-stream"

    handler = _handler(input_fn=input_fn, predict_fn=predict_fn, output_fn=output_fn)
    headers = {"x-amzn-sagemaker-custom-attributes": "trace=1", "content-type": "application/x-thing"}
    result = handler.invoke(b"abc", headers)
    assert (result.body, result.content_type, result.custom_attributes) == (
        b"abc",
        "application/octet-stream",
        "answered",
    )
    assert seen == {"attributes": "trace=1"}


def test_value_error_while_decoding_is_a_bad_request() -> None:
    handler = _handler(input_fn=lambda body, content_type: json.loads(body), predict_fn=lambda d, m: d)
    with pytest.raises(BadRequestError, match="could not decode"):
        handler.invoke(b"{nope", {})


def test_failure_in_predict_is_a_model_error_without_details(caplog: pytest.LogCaptureFixture) -> None:
    def predict_fn(data, model):
        raise ValueError("secret")

    handler = _handler(predict_fn=predict_fn)
    with pytest.raises(ModelError) as raised:
        handler.invoke(b"[[1, 2]]", {"content-type": "application/json"})
    assert "secret" not in raised.value.message
    assert raised.value.error_id in raised.value.message
    assert "secret" in caplog.text  # the traceback goes to the log


def test_output_fn_rejecting_an_accept_falls_through_to_the_next() -> None:
    def output_fn(prediction, accept):
        if accept != "text/plain":
            raise UnsupportedAcceptError(accept)
        return "ok"

    handler = _handler(input_fn=lambda b, c: b, predict_fn=lambda d, m: d, output_fn=output_fn)
    result = handler.invoke(b"", {"accept": "application/json, text/plain;q=0.2"})
    assert (result.body, result.content_type) == (b"ok", "text/plain")
    with pytest.raises(UnsupportedAcceptError):
        handler.invoke(b"", {"accept": "application/json"})


@pytest.mark.parametrize(("status", "code"), [(422, "ClientError"), (503, "ModelError")])
def test_toolkit_errors_keep_their_status_and_message(status: int, code: str) -> None:
    from sagemaker_inference.errors import GenericInferenceToolkitError

    def input_fn(body, content_type):
        raise GenericInferenceToolkitError(status, "bad shape")

    handler = _handler(input_fn=input_fn, predict_fn=lambda d, m: d)
    with pytest.raises(core.InvocationError) as raised:
        handler.invoke(b"", {})
    assert (raised.value.status, raised.value.code, raised.value.message) == (status, code, "bad shape")


def test_json_and_csv_bodies_arrive_as_text_in_their_charset_others_as_bytes() -> None:
    seen = []
    handler = _handler(
        input_fn=lambda body, content_type: seen.append(body), predict_fn=lambda d, m: d, output_fn=lambda p, a: b""
    )
    handler.invoke("é,1".encode("latin-1"), {"content-type": "text/csv; charset=latin-1"})
    handler.invoke('{"a": "é"}'.encode(), {"content-type": "Application/JSON"})
    handler.invoke(b"\xff", {"content-type": "application/octet-stream"})
    handler.invoke(b"a b", {"content-type": "text/plain"})
    assert seen == ["é,1", '{"a": "é"}', b"\xff", b"a b"]
    with pytest.raises(BadRequestError, match="not valid utf-8"):
        handler.invoke(b"[\xff]", {"content-type": "application/json"})
    with pytest.raises(UnsupportedContentTypeError, match="charset"):
        handler.invoke(b"1", {"content-type": "text/csv; charset=klingon"})


def test_pre_model_fn_then_model_fn_then_model_warmup_fn(tmp_path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(
        "calls = []\n"
        "def pre_model_fn(model_dir):\n    calls.append(('pre_model_fn', model_dir))\n"
        "def model_fn(model_dir, context):\n    calls.append(('model_fn', context.model_dir)); return 'model'\n"
        "def model_warmup_fn(model_dir, model):\n    calls.append(('model_warmup_fn', model_dir, model))\n"
        "def predict_fn(data, model):\n    return calls\n"
    )
    handler = Handler.load(Settings(model_dir=str(tmp_path), code_dirs=(str(tmp_path / "code"),)))
    result = handler.invoke(b"[1]", {"content-type": "application/json"})
    model_dir = str(tmp_path)
    assert json.loads(result.body) == [
        ["pre_model_fn", model_dir],
        ["model_fn", model_dir],
        ["model_warmup_fn", model_dir, "model"],
    ]


def test_transform_fn_cannot_be_combined_with_the_other_hooks() -> None:
    with pytest.raises(ModelLoadError, match="transform_fn"):
        _handler(transform_fn=lambda m, b, c, a: b, predict_fn=lambda d, m: d)


def test_default_input_fn_decodes_json_csv_npy_libsvm_to_rows() -> None:
    rows = [[1.0, 2.0], [3.0, 4.0]]
    context = core.Context(model_dir="/m")
    assert defaults.input_fn("[[1, 2], [3, 4]]", "application/json", context).tolist() == rows
    assert defaults.input_fn("[1, 2]", "application/json", context).tolist() == [[1.0, 2.0]]  # one row
    assert defaults.input_fn("1,2\n3,4\n", "text/csv", context).dtype == np.float32
    assert np.isnan(defaults.input_fn("1,,3", "text/csv", context)[0, 1])  # an empty field is a missing value
    npy = defaults.output_fn(np.array(rows), "application/x-npy", context)[0]
    assert defaults.input_fn(npy, "application/x-npy", context).tolist() == rows
    assert defaults.input_fn(b"1 1:0.5 3:2\n0 2:1", "text/libsvm", context).tolist() == [[0.5, 0, 2], [0, 1, 0]]
    assert not context.answer_predictions
    assert defaults.input_fn('{"instances": [[1, 2]]}', "application/json", context).tolist() == [[1.0, 2.0]]
    assert context.answer_predictions  # so the default output_fn answers {"predictions": ...}
    with pytest.raises(UnsupportedContentTypeError):
        defaults.input_fn(b"", "text/xml", context)
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for bad, content_type in [
        ("a,b\n", "text/csv"),
        ("1,2\n3\n", "text/csv"),
        ("[]", "application/json"),
        (pickled.getvalue(), "application/x-npy"),  # object arrays would be unpickled: refused
    ]:
        with pytest.raises(BadRequestError):
            defaults.input_fn(bad, content_type, context)


def test_default_output_fn_encodes_as_sagemaker_inference_does() -> None:
    from sagemaker_inference import encoder

    context = core.Context(model_dir="/m")
    for prediction in (np.array([0.5, 1.25], dtype=np.float32), np.array([[1, 2], [3, 4]]), [1, 2]):
        for accept in ("application/json", "text/csv", "application/x-npy"):
            expected = encoder.encode(prediction, accept)
            expected = expected.encode() if isinstance(expected, str) else expected
            assert defaults.output_fn(prediction, accept, context) == (expected, accept)


def test_settings_name_the_variable_at_fault() -> None:
    with pytest.raises(SettingsError, match="SAGEMAKER_MODEL_SERVER_WORKERS"):
        Settings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "many"})
    settings = Settings.from_env({"SM_MODEL_DIR": "/m", "SAGEMAKER_PROGRAM": "serve_me.py"})
    assert settings.code_dirs == ("/m/code", "/opt/ml/code")
    assert settings.program == "serve_me.py"
    assert settings.port == 8080
    assert settings.host == "0.0.0.0"


def test_json_log_lines_leave_out_uvicorn_colour_codes() -> None:
    from dropship_serve.logs import JsonFormatter

    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started server process [%d]", (7,), None)
    record.color_message = "Started server process [\x1b[36m%d\x1b[0m]"  # what uvicorn passes as extra
    record.event = "started"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "Started server process [7]"
    assert line["event"] == "started" and "color_message" not in line
