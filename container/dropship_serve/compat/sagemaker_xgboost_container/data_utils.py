"""The XGBoost image's training-data helpers: their names import, loading training data is not available."""

from __future__ import annotations

from typing import Any

CSV = "csv"
LIBSVM = "libsvm"
PARQUET = "parquet"
RECORDIO_PROTOBUF = "recordio-protobuf"


def get_dmatrix(data_path: Any, content_type: str, csv_weights: int = 0, is_pipe: bool = False) -> Any:
    raise NotImplementedError("get_dmatrix loads training data: it does not run in dropship's inference container")
