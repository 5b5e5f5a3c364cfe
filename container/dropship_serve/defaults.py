"""The hooks used when `inference.py` does not define them: JSON, CSV and NPY in and out, joblib/pickle models.

JSON input is either a list of rows (`[[1, 2, 3, 4]]`) or `{"instances": [...]}`; JSON output is
`{"predictions": [...]}` (a dict returned by `predict_fn` is sent as it is).
"""

from __future__ import annotations

import io
import json
import os
import pickle
from typing import Any

import numpy as np

from dropship_serve.errors import BadRequestError, UnsupportedAcceptError, UnsupportedContentTypeError

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
CONTENT_TYPES = (JSON, CSV, NPY)
ACCEPTS = (JSON, CSV, NPY)

MODEL_FILES = ("model.joblib", "model.pkl", "model.pickle", "xgboost-model", "model")
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")


def model_fn(model_dir: str) -> Any:
    """Load a scikit-learn or XGBoost-style model saved with joblib or pickle.

    Looks for `model.joblib`, `model.pkl`, `model.pickle`, `xgboost-model` or `model`, else the only
    `*.joblib` / `*.pkl` / `*.pickle` file in the directory.
    """
    path = _find_model_file(model_dir)
    try:
        import joblib
    except ImportError:  # pragma: no cover - joblib is part of the image
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301  (the model artifact is trusted: it is what we serve)
    return joblib.load(path)


def _find_model_file(model_dir: str) -> str:
    for name in MODEL_FILES:
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            return path
    files = sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) else []
    candidates = [name for name in files if name.endswith(MODEL_SUFFIXES)]
    if len(candidates) == 1:
        return os.path.join(model_dir, candidates[0])
    found = ", ".join(files) or "nothing"
    raise FileNotFoundError(
        f"no model_fn in inference.py and no single model file in {model_dir} "
        f"(expected one of {', '.join(MODEL_FILES)} or one *.joblib/*.pkl/*.pickle; found {found})"
    )


def input_fn(body: bytes, content_type: str) -> Any:
    """Decode JSON, CSV (numbers, no header) or NPY into a numpy array."""
    if content_type == JSON:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequestError(f"body is not valid JSON: {exc}") from None
        if isinstance(payload, dict):
            if "instances" not in payload:
                raise BadRequestError('JSON body must be a list of rows or an object with "instances"')
            payload = payload["instances"]
        if not isinstance(payload, list):
            raise BadRequestError("JSON instances must be a list")
        try:
            return np.asarray(payload)
        except ValueError as exc:
            raise BadRequestError(f"JSON instances are not a rectangular array: {exc}") from None
    if content_type == CSV:
        try:
            text = body.decode("utf-8")
            return np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            raise BadRequestError(f"body is not numeric CSV: {exc}") from None
    if content_type == NPY:
        try:
            return np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BadRequestError(f"body is not a .npy array: {exc}") from None
    raise UnsupportedContentTypeError(
        f"Content-Type {content_type!r} is not supported; use one of {', '.join(CONTENT_TYPES)}"
    )


def predict_fn(data: Any, model: Any) -> Any:
    """`model.predict(data)`, checking the shape first when the model knows its number of features."""
    expected = getattr(model, "n_features_in_", None)
    if isinstance(expected, int) and isinstance(data, np.ndarray) and data.dtype != object:
        if data.ndim != 2:
            raise BadRequestError(f"expected a 2-D array of rows with {expected} features, got {data.ndim}-D")
        if data.shape[1] != expected:
            raise BadRequestError(f"expected {expected} features per row, got {data.shape[1]}")
    if type(model).__module__.startswith("xgboost") and type(model).__name__ == "Booster":
        import xgboost

        return model.predict(xgboost.DMatrix(data))
    if hasattr(model, "predict"):
        return model.predict(data)
    if callable(model):
        return model(data)
    raise TypeError(f"the default predict_fn needs a model with .predict(); got {type(model).__name__}")


def output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """Encode as JSON (`{"predictions": ...}`), CSV (one row per line) or NPY."""
    if accept == JSON:
        payload = prediction if isinstance(prediction, dict) else {"predictions": prediction}
        return json.dumps(payload, default=_json_default, separators=(",", ":")).encode(), JSON
    if accept == CSV:
        array = np.asarray(prediction)
        if array.ndim == 0:
            array = array.reshape(1)
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        buffer = io.StringIO()
        np.savetxt(buffer, array, delimiter=",", fmt="%s")
        return buffer.getvalue().encode(), CSV
    if accept == NPY:
        buffer_bytes = io.BytesIO()
        np.save(buffer_bytes, np.asarray(prediction), allow_pickle=False)
        return buffer_bytes.getvalue(), NPY
    raise UnsupportedAcceptError(f"cannot encode the prediction as {accept!r}; use one of {', '.join(ACCEPTS)}")


def warmup(model: Any) -> None:
    """Run one prediction on a row of zeros when the model says how many features it takes."""
    n_features = getattr(model, "n_features_in_", None)
    if isinstance(n_features, int) and hasattr(model, "predict"):
        model.predict(np.zeros((1, n_features)))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
