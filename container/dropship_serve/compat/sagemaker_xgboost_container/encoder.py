"""The SageMaker XGBoost image's decoders: CSV and libsvm request bodies to an `xgboost.DMatrix`.

They behave as the image's functions do: CSV's delimiter is sniffed from the first line and empty fields
are missing values; libsvm is read dense (absent features are 0), with 1-based indices unless one is 0.
RecordIO-protobuf is not covered.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import xgboost as xgb
from sagemaker_containers import _content_types, _errors
from sagemaker_xgboost_container.constants import xgb_content_types

from dropship_serve.defaults import libsvm_to_array


def csv_to_dmatrix(input: str | bytes, dtype: Any = None) -> xgb.DMatrix:
    """CSV text (no leading or trailing newline) to a DMatrix; `dtype` None reads float64."""
    text = input.decode() if isinstance(input, bytes) else input
    delimiter = csv.Sniffer().sniff(text.split("\n")[0][:512]).delimiter
    if delimiter.isalnum():
        delimiter = ","
    rows = [["nan" if field == "" else field for field in line.split(delimiter)] for line in text.split("\n")]
    return xgb.DMatrix(np.array(rows).astype(dtype))


def libsvm_to_dmatrix(string_like: str | bytes) -> xgb.DMatrix:
    text = string_like.decode("utf-8") if isinstance(string_like, (bytes, bytearray)) else string_like
    return xgb.DMatrix(libsvm_to_array(text))


_DECODERS: dict[str, Callable[[Any], xgb.DMatrix]] = {
    _content_types.CSV: csv_to_dmatrix,
    xgb_content_types.LIBSVM: libsvm_to_dmatrix,
    xgb_content_types.X_LIBSVM: libsvm_to_dmatrix,
}


def decode(obj: Any, content_type: str) -> xgb.DMatrix:
    """CSV or libsvm (the media type's parameters are ignored) to a DMatrix; else UnsupportedFormatError."""
    media_type = content_type.split(";", 1)[0].strip()
    decoder = _DECODERS.get(media_type)
    if decoder is None:
        raise _errors.UnsupportedFormatError(media_type)
    return decoder(obj)


def json_to_jsonlines(json_data: dict[str, Any] | str) -> bytes:
    """`{"key": [a, b]}` (a dict or its JSON) to JSON Lines, one entry a line."""
    document = json_data if isinstance(json_data, dict) else json.loads(json_data)
    if len(document) != 1:
        raise ValueError("JSON response is not compatible for conversion to jsonlines.")
    lines = io.BytesIO()
    for entries in document.values():
        for entry in entries:
            lines.write((json.dumps(entry) + "\n").encode("utf-8"))
    return lines.getvalue()
