"""The stand-in helper modules against the real things they stand in for, without a server.

- sagemaker_containers' encoders against sagemaker-inference's encoder and decoder, whose functions
  give the same results for numeric arrays (property-based, over many arrays);
- worker.Response against Flask's Response, which it is in the framework images;
- the libsvm reader (the default input_fn's and sagemaker_xgboost_container.encoder's) against
  scikit-learn's svmlight reader, whose `zero_based="auto"` is the XGBoost image's indexing rule.
"""

from __future__ import annotations

import io
import json
from http import HTTPStatus
from pathlib import Path

import flask
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sagemaker_inference import decoder, encoder
from sklearn.datasets import load_svmlight_file

from dropship_serve import compat, core, defaults, requirements

compat.install()

from sagemaker_containers.beta.framework import content_types, encoders, errors, worker  # noqa: E402

FINITE = st.floats(-1e30, 1e30, allow_nan=False, width=64)  # within float32 range: JSON and CSV become float32
ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6),
    elements=st.integers(-(10**6), 10**6),
) | hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6), elements=FINITE)


@settings(max_examples=200, deadline=None)
@given(ARRAYS)
def test_encoders_write_what_sagemaker_inference_writes(array: np.ndarray) -> None:
    for content_type in (content_types.JSON, content_types.CSV, content_types.NPY):
        assert encoders.encode(array, content_type) == encoder.encode(array, content_type)
    assert encoders.encode(array.tolist(), content_types.JSON) == encoder.encode(array.tolist(), content_types.JSON)


@settings(max_examples=200, deadline=None)
@given(ARRAYS)
def test_encoders_read_what_sagemaker_inference_reads(array: np.ndarray) -> None:
    text = encoder.encode(array, content_types.CSV)
    np.testing.assert_array_equal(encoders.decode(text, content_types.CSV), decoder.decode(text, content_types.CSV))
    text = encoder.encode(array, content_types.JSON)
    np.testing.assert_array_equal(encoders.decode(text, content_types.JSON), decoder.decode(text, content_types.JSON))
    npy = encoder.encode(array, content_types.NPY)
    np.testing.assert_array_equal(encoders.decode(npy, content_types.NPY), decoder.decode(npy, content_types.NPY))


@settings(max_examples=200, deadline=None)
@given(ARRAYS)
def test_default_input_fn_reads_csv_as_sagemaker_inference_does(array: np.ndarray) -> None:
    """Same numbers as numpy.genfromtxt in the toolkit, one row per line; JSON and CSV become float32."""
    rows = array.reshape(array.shape[0], -1) if array.ndim == 2 else array.reshape(1, -1)
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
    expected = decoder.decode(text, content_types.CSV).reshape(rows.shape).astype(np.float32)
    np.testing.assert_array_equal(defaults.input_fn(text, "text/csv", core.Context("/m")), expected)


def test_encoders_refuse_other_types_and_pickles() -> None:
    with pytest.raises(errors.UnsupportedFormatError, match="text/plain"):
        encoders.encode([1], "text/plain")
    with pytest.raises(errors.UnsupportedFormatError):
        encoders.decode(b"", "application/x-parquet")
    with pytest.raises(ValueError, match="allow_pickle=False"):
        encoders.decode(encoder.encode(np.array([{"a": 1}], dtype=object), content_types.NPY), content_types.NPY)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("{}",), {}),
        (("a,b",), {"mimetype": "text/csv"}),
        ((b"\x00\x01",), {"mimetype": "application/x-npy", "status": 200}),
        (("nope",), {"status": 415}),
        (("gone",), {"status": "404 NOT HERE"}),
        (("<r/>",), {"mimetype": "application/xml", "status": HTTPStatus.BAD_REQUEST}),
        ((["part one, ", "part two"],), {"headers": {"Content-Type": "text/plain"}}),
        (("x",), {"headers": [("X-Thing", "1")], "mimetype": "text/html"}),
        ((None,), {"status": 204}),
    ],
)
def test_worker_response_is_what_flask_builds(args: tuple, kwargs: dict) -> None:
    class ImageResponse(flask.Response):
        default_mimetype = "application/json"

    ours, theirs = worker.Response(*args, **kwargs), ImageResponse(*args, **kwargs)
    assert (ours.status_code, ours.status, ours.content_type, ours.mimetype) == (
        theirs.status_code,
        theirs.status,
        theirs.content_type,
        theirs.mimetype,
    )
    assert ours.get_data() == theirs.get_data() and ours.data == theirs.data
    assert ours.headers.get("X-Thing") == theirs.headers.get("X-Thing")


def test_worker_response_takes_the_deprecated_accept_argument() -> None:
    with pytest.warns(DeprecationWarning, match="accept"):
        response = worker.Response("[1]", "application/json", mimetype="application/json")
    assert core.as_output(response, "text/csv", _hook()) == core.Output(b"[1]", "application/json", 200)


def test_a_flask_response_is_sent_with_its_status() -> None:
    response = flask.Response("created", status=201, mimetype="text/plain")
    assert core.as_output(response, "text/csv", _hook()) == core.Output(b"created", "text/plain; charset=utf-8", 201)


def test_env_and_transformer_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from sagemaker_containers.beta.framework import env, transformer

    monkeypatch.setenv("SM_MODEL_DIR", "/models/iris")
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "serve_it.py")
    serving = env.ServingEnv()
    assert (serving.model_dir, serving.module_name, serving.default_accept) == (
        "/models/iris",
        "serve_it",
        "application/json",
    )
    np.testing.assert_array_equal(transformer.default_input_fn("1,2\n3,4", "text/csv"), [[1, 2], [3, 4]])
    response = transformer.default_output_fn(np.array([1, 2]), "text/csv")
    assert (response.get_data(), response.content_type) == (b"1\n2\n", "text/csv; charset=utf-8")
    with pytest.raises(NotImplementedError):
        transformer.default_model_fn("/models/iris")


def _hook() -> core.Hook:
    return core.Hook("output_fn", lambda prediction, accept: None, 2, is_default=False)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (b"x", core.Output(b"x", "text/csv")),
        ("é", core.Output("é".encode(), "text/csv")),
        (("a,b", "text/plain"), core.Output(b"a,b", "text/plain")),
        ((b"a", "text/plain", "ignored"), core.Output(b"a", "text/plain")),
    ],
)
def test_output_fn_results(result: object, expected: core.Output) -> None:
    assert core.as_output(result, "text/csv", _hook()) == expected


@pytest.mark.parametrize("result", [{"b": [1, 2], "a": "é"}, [1, {"x": None}], {"nested": {"z": 1, "y": 2}}])
def test_a_dict_or_list_from_output_fn_is_json_as_flask_sends_it(result: object) -> None:
    app = flask.Flask(__name__)
    with app.app_context():
        expected = app.make_response(result)
    assert core.as_output(result, "text/csv", _hook()) == core.Output(
        expected.get_data(), expected.headers["Content-Type"]
    )


def test_unusable_results_are_refused() -> None:
    for result in (np.array([1, 2]), 42, None, (np.array([1]), "text/csv")):
        with pytest.raises(TypeError, match="must return bytes, str"):
            core.as_output(result, "text/csv", _hook())


LIBSVM_ROWS = st.lists(
    st.dictionaries(st.integers(0, 12), st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=6),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(LIBSVM_ROWS, st.sampled_from([0, 1]))
def test_libsvm_rows_are_read_as_scikit_learn_reads_them(rows: list[dict[int, float]], base: int) -> None:
    text = "\n".join(f"1 {' '.join(f'{i + base}:{v!r}' for i, v in sorted(row.items()))}" for row in rows)
    expected, _ = load_svmlight_file(io.BytesIO(text.encode()), zero_based="auto")
    np.testing.assert_array_equal(defaults.libsvm_to_array(text), expected.toarray())


def test_xgboost_encoder_reads_csv_and_libsvm_as_the_xgboost_image() -> None:
    from sagemaker_xgboost_container import encoder as xgb_encoders
    from sagemaker_xgboost_container.constants import xgb_content_types

    dense = xgb_encoders.decode("1,2,3\n4,,6", "text/csv")
    assert (dense.num_row(), dense.num_col()) == (2, 3)
    assert xgb_encoders.csv_to_dmatrix(b"1|2|3", dtype=float).num_col() == 3  # the delimiter is sniffed
    sparse = xgb_encoders.decode(b"0 2:1.5 4:2", f"{xgb_content_types.LIBSVM}; charset=utf-8")
    assert (sparse.num_row(), sparse.num_col()) == (1, 4)
    with pytest.raises(errors.UnsupportedFormatError):
        xgb_encoders.decode(b"", xgb_content_types.X_RECORDIO_PROTOBUF)
    assert xgb_encoders.json_to_jsonlines({"predictions": [{"score": 1}, {"score": 2}]}) == (
        b'{"score": 1}\n{"score": 2}\n'
    )


def test_training_helpers_import_and_say_they_do_not_run_here() -> None:
    from sagemaker_containers import entry_point  # noqa: F401
    from sagemaker_xgboost_container import distributed  # noqa: F401
    from sagemaker_xgboost_container.data_utils import get_dmatrix

    with pytest.raises(NotImplementedError, match="training data"):
        get_dmatrix("/opt/ml/input/data/train", "libsvm")


def test_sagemaker_inference_decoder_patch_applies_to_the_pinned_version() -> None:
    """The Dockerfile turns allow_pickle=True into False in sagemaker_inference/decoder.py."""
    source = Path(decoder.__file__).read_text()
    assert source.count("allow_pickle=True") == 1
    assert "np.load(stream, allow_pickle=True)" in source


def test_an_xgboost_requirement_is_met_by_xgboost_cpu(tmp_path: Path) -> None:
    import xgboost

    (tmp_path / "requirements.txt").write_text(f"xgboost=={xgboost.__version__}\npandas>=2\nxgboost<1\n")
    assert requirements.unsatisfied(str(tmp_path / "requirements.txt")) == ["xgboost<1"]


def test_the_framework_images_helper_packages_are_met_by_the_stand_ins(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("sagemaker-containers==2.8.6.post2\nsagemaker_xgboost_container\n")
    assert requirements.unsatisfied(str(tmp_path / "requirements.txt")) == []


def test_json_default_in_output_is_what_sagemaker_inference_gives() -> None:
    prediction = {"scores": np.array([0.25, 0.5], dtype=np.float32), "label": np.int64(1)}
    context = core.Context("/m")
    assert (
        defaults.output_fn(prediction, "application/json", context)[0]
        == encoder.encode(prediction, "application/json").encode()
    )
    assert json.loads(defaults.output_fn(prediction, "application/json", context)[0])["label"] == 1
