"""Real model artifacts for tests: a trained scikit-learn model, custom inference.py code, bad tarballs."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from functools import cache
from pathlib import Path

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
IRIS_REQUEST = json.dumps({"instances": [IRIS_ROW]})


@cache
def iris_model_bytes() -> bytes:
    """A LogisticRegression trained on iris, pickled with joblib (what the default handler loads)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def iris_artifact(extra: dict[str, bytes] | None = None) -> bytes:
    return tarball({"model.joblib": iris_model_bytes(), **(extra or {})})


def inference_artifact(code: str) -> bytes:
    """A model whose behaviour is its own code/inference.py (no trained weights needed)."""
    return tarball({"code/inference.py": code.encode(), "weights.txt": b"1"})


FAILING_MODEL_FN = """
def model_fn(model_dir):
    raise RuntimeError("weights.bin is missing from the model directory")
"""

SLOW_MODEL_FN = """
import time

def model_fn(model_dir):
    time.sleep(35)  # longer than the integration stack's EndpointTimeoutSeconds (25)
    return object()
"""

ECHO_MODEL = """
import json

def model_fn(model_dir):
    return "echo"

def transform_fn(model, body, content_type, accept):
    return json.dumps({"echo": json.loads(body)}), "application/json"
"""


def unsafe_artifact() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("../../etc/cron.d/evil")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"evil"))
    return buffer.getvalue()


def oversized_artifact(size: int) -> bytes:
    """Small to upload, large once unpacked: one member of ``size`` zero bytes."""
    return tarball({"zeros.bin": bytes(size)})


def write_model_dir(target: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return target


def pickled(obj: object) -> bytes:
    return pickle.dumps(obj)
