"""The hooks used where `inference.py` defines none, with the semantics of SageMaker's framework containers.

- `input_fn`: what the scikit-learn image's handler does on sagemaker-inference: JSON (`numpy.array` of
  the document), CSV (one row per line) and NPY become an array, a single row is made 2-D, and JSON/CSV
  numbers become float32. `text/libsvm` is read as the XGBoost image reads it (dense, missing = 0).
- `predict_fn`: `model.predict(data)`; an XGBoost `Booster` gets a `DMatrix` and
  `validate_features=False`, as in the XGBoost image.
- `output_fn`: sagemaker-inference's encoders: JSON is `json.dumps` of the prediction, CSV is
  `numpy.savetxt(fmt="%s")`, NPY is `numpy.save`.

Where those containers fail with a 500, these answer instead; each case is listed in container/README.md:
a JSON object `{"instances": [...]}` is answered `{"predictions": [...]}`, a CSV column of several lines
is several rows, and bodies that cannot be decoded or do not fit the model are a 400 that says why.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from typing import Any

import numpy as np

from dropship_serve import model_files
from dropship_serve.core import Context, json_default
from dropship_serve.errors import BadRequestError, UnsupportedAcceptError, UnsupportedContentTypeError

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
LIBSVM = "text/libsvm"
X_LIBSVM = "text/x-libsvm"
CONTENT_TYPES = (JSON, CSV, NPY, LIBSVM, X_LIBSVM)
ACCEPTS = (JSON, CSV, NPY)
FLOAT32_TYPES = (JSON, CSV)  # the scikit-learn image casts these (its UTF-8 types) to float32


def model_fn(model_dir: str) -> Any:
    """Load the model file in `model_dir` (see model_files for the names and formats)."""
    return model_files.load(model_files.find(model_dir))


def input_fn(body: str | bytes, content_type: str, context: Context) -> Any:
    """Decode JSON, CSV, NPY or libsvm into a 2-D numpy array."""
    if content_type == JSON:
        array = _from_json(body, context)
    elif content_type == CSV:
        array = _from_csv(_text(body))
    elif content_type == NPY:
        array = _from_npy(_bytes(body))
    elif content_type in (LIBSVM, X_LIBSVM):
        array = libsvm_to_array(_text(body))
    else:
        raise UnsupportedContentTypeError(
            f"Content-Type {content_type!r} is not supported; use one of {', '.join(CONTENT_TYPES)}"
        )
    if array.size == 0:
        raise BadRequestError("the body holds no rows")
    if array.ndim == 1:
        array = array.reshape(1, -1)  # one row
    if content_type in FLOAT32_TYPES:
        with contextlib.suppress(TypeError, ValueError):  # text, say: the model may still take it
            array = array.astype(np.float32)
    return array


def predict_fn(data: Any, model: Any) -> Any:
    """`model.predict(data)`; checks the number of features first when the model knows it."""
    if _is_booster(model):
        return _predict_booster(data, model)
    expected = getattr(model, "n_features_in_", None)
    if isinstance(expected, int) and isinstance(data, np.ndarray) and data.dtype != object:
        if data.ndim != 2:
            raise BadRequestError(f"expected a 2-D array of rows with {expected} features, got {data.ndim}-D")
        if data.shape[1] != expected:
            raise BadRequestError(f"expected {expected} features per row, got {data.shape[1]}")
    if hasattr(model, "predict"):
        return model.predict(data)
    if callable(model):
        return model(data)
    raise TypeError(f"the default predict_fn needs a model with .predict(); got {type(model).__name__}")


def output_fn(prediction: Any, accept: str, context: Context) -> tuple[bytes, str]:
    """Encode as JSON, CSV (one row per line) or NPY."""
    if accept == JSON:
        payload = {"predictions": prediction} if context.answer_predictions else prediction
        return json.dumps(payload, default=json_default).encode(), JSON
    if accept == CSV:
        array = np.asarray(prediction)
        buffer = io.StringIO()
        np.savetxt(buffer, array.reshape(1) if array.ndim == 0 else array, delimiter=",", fmt="%s")
        return buffer.getvalue().encode(), CSV
    if accept == NPY:
        buffer_bytes = io.BytesIO()
        np.save(buffer_bytes, np.asarray(prediction), allow_pickle=False)
        return buffer_bytes.getvalue(), NPY
    raise UnsupportedAcceptError(f"cannot encode the prediction as {accept!r}; use one of {', '.join(ACCEPTS)}")


def warmup(model: Any) -> None:
    """One prediction on a row of zeros, when the model says how many features it takes."""
    if _is_booster(model):
        _predict_booster(np.zeros((1, model.num_features()), dtype=np.float32), model)
        return
    n_features = getattr(model, "n_features_in_", None)
    if isinstance(n_features, int) and hasattr(model, "predict"):
        model.predict(np.zeros((1, n_features), dtype=np.float32))


# -- decoding --------------------------------------------------------------------------------------------


def _from_json(body: str | bytes, context: Context) -> np.ndarray:
    try:
        document = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise BadRequestError(f"body is not valid JSON: {exc}") from None
    if isinstance(document, dict):
        if "instances" not in document:
            raise BadRequestError('a JSON object body must hold the rows in "instances"')
        context.answer_predictions = True
        document = document["instances"]
    try:
        return np.array(document)
    except ValueError as exc:
        raise BadRequestError(f"JSON rows are not a rectangular array: {exc}") from None


def _from_csv(text: str) -> np.ndarray:
    try:  # numpy's C parser: the fast path for well-formed numbers
        return np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError:
        return _from_csv_fields(text)


def _from_csv_fields(text: str) -> np.ndarray:
    """Empty fields are NaN (as numpy.genfromtxt and the XGBoost image read them); anything else must be a number."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        if not line.strip():
            continue
        row = []
        for field in line.split(","):
            field = field.strip()
            try:
                row.append(float(field) if field else math.nan)
            except ValueError:
                raise BadRequestError(f"body is not numeric CSV: line {number} has {field[:40]!r}") from None
        rows.append(row)
    if len({len(row) for row in rows}) > 1:
        raise BadRequestError("body is not numeric CSV: its lines have different numbers of fields")
    return np.array(rows, dtype=np.float64)


def _from_npy(body: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadRequestError(f"body is not a .npy array: {exc}") from None


def libsvm_to_array(text: str) -> np.ndarray:
    """`label index:value ...` per line, indices 1-based unless one is 0; absent features are 0."""
    rows = []
    try:
        for line in text.strip().splitlines():
            pairs = (token.split(":", 1) for token in line.split() if ":" in token)
            rows.append({int(index): float(value) for index, value in pairs})
    except ValueError as exc:
        raise BadRequestError(f"body is not libsvm: {exc}") from None
    indices = [index for row in rows for index in row]
    if not indices:
        return np.empty((0, 0))
    offset = 1 if min(indices) >= 1 else 0
    if min(indices) < 0:
        raise BadRequestError("body is not libsvm: a feature index is negative")
    array = np.zeros((len(rows), max(indices) - offset + 1))
    for i, row in enumerate(rows):
        for index, value in row.items():
            array[i, index - offset] = value
    return array


def _text(body: str | bytes) -> str:
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"body is not UTF-8: {exc}") from None


def _bytes(body: str | bytes) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


# -- predicting and encoding -----------------------------------------------------------------------------


def _is_booster(model: Any) -> bool:
    return type(model).__name__ == "Booster" and type(model).__module__.startswith("xgboost")


def _predict_booster(data: Any, booster: Any) -> Any:
    import xgboost

    matrix = data if isinstance(data, xgboost.DMatrix) else xgboost.DMatrix(data)
    if matrix.num_col() > booster.num_features():
        raise BadRequestError(f"expected at most {booster.num_features()} features per row, got {matrix.num_col()}")
    return booster.predict(matrix, validate_features=False)
