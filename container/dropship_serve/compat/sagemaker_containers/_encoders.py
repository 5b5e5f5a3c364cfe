"""sagemaker-containers' encoders: numpy arrays to and from JSON, CSV and NPY, as its functions behave.

One deliberate difference: NPY bodies are read without unpickling (`allow_pickle=False`), as AWS's
images patch sagemaker-inference to do; an object array in a request is refused.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
from sagemaker_containers import _content_types, _errors


def array_to_npy(array_like: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array_like)
    return buffer.getvalue()


def npy_to_numpy(npy_array: bytes) -> np.ndarray:
    return np.load(io.BytesIO(npy_array), allow_pickle=False)


def array_to_json(array_like: Any) -> str:
    def default(value: Any) -> Any:
        if hasattr(value, "tolist"):
            return value.tolist()
        return json.JSONEncoder().default(value)

    return json.dumps(array_like, default=default)


def json_to_numpy(string_like: str | bytes, dtype: Any = None) -> np.ndarray:
    return np.array(json.loads(string_like), dtype=dtype)


def csv_to_numpy(string_like: str, dtype: Any = None) -> np.ndarray:
    """Rows of fields, squeezed (one row or one column becomes 1-D), then cast to `dtype` (float64 by default).

    As in sagemaker-containers, text that cannot be cast is returned as an array of strings when no
    `dtype` is asked for, and raises ClientError when one is.
    """
    try:
        reader = csv.reader(io.StringIO(string_like), delimiter=",", quotechar='"', doublequote=True, strict=True)
        array = np.array(list(reader)).squeeze()
    except Exception as exc:
        raise _errors.ClientError(f"Error while decoding csv: {exc}") from exc
    try:
        return array.astype(dtype)
    except ValueError as exc:
        if dtype is not None:
            raise _errors.ClientError(f"Error while writing numpy array: {exc}. dtype is: {dtype}") from exc
        return array


def array_to_csv(array_like: Any) -> str:
    array = np.array(array_like)
    if array.ndim == 1:
        array = array.reshape(array.shape[0], 1)
    stream = io.StringIO()
    try:
        writer = csv.writer(stream, lineterminator="\n", delimiter=",", quotechar='"', doublequote=True, strict=True)
        writer.writerows(array)
    except csv.Error as exc:
        raise _errors.ClientError(f"Error while encoding csv: {exc}") from exc
    return stream.getvalue()


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    _content_types.NPY: array_to_npy,
    _content_types.CSV: array_to_csv,
    _content_types.JSON: array_to_json,
}
_DECODERS: dict[str, Callable[[Any], Any]] = {
    _content_types.NPY: npy_to_numpy,
    _content_types.CSV: csv_to_numpy,
    _content_types.JSON: json_to_numpy,
}


def decode(obj: Any, content_type: str) -> np.ndarray:
    """JSON, CSV or NPY to a numpy array; any other type raises UnsupportedFormatError."""
    decoder = _DECODERS.get(content_type)
    if decoder is None:
        raise _errors.UnsupportedFormatError(content_type)
    return decoder(obj)


def encode(array_like: Any, content_type: str) -> Any:
    """An array-like to JSON (str), CSV (str) or NPY (bytes); any other type raises UnsupportedFormatError."""
    encoder = _ENCODERS.get(content_type)
    if encoder is None:
        raise _errors.UnsupportedFormatError(content_type)
    return encoder(array_like)
