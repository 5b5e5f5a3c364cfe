"""The default model_fn's loader: which file in the model directory is the model, and how to read it.

Reads what scikit-learn and XGBoost users save: joblib or pickle files (any estimator, XGBoost's
`XGBClassifier`/`XGBRegressor`, a pickled `Booster`) and XGBoost's own `Booster.save_model` formats
(JSON, UBJSON and the legacy binary format), with or without a suffix. Like the SageMaker XGBoost
container, the format is told from the file's content, not its name: pickle first when the file looks
like one, XGBoost when it starts like a JSON/UBJSON document or a binary model, else each in turn.
"""

from __future__ import annotations

import os
from typing import Any

NAMES = ("model.joblib", "model.pkl", "model.pickle", "xgboost-model", "model.json", "model.ubj", "model.bin", "model")
"""Looked for first, in this order (`xgboost-model` is what the SageMaker XGBoost container writes)."""
SUFFIXES = (".joblib", ".pkl", ".pickle", ".json", ".ubj", ".bin", ".model")
FORMATS = (
    "joblib or pickle (scikit-learn estimators and pipelines, XGBClassifier/XGBRegressor, a pickled Booster) "
    "or XGBoost's Booster.save_model formats (JSON, UBJSON, legacy binary)"
)

PICKLE_PROTOCOL_2_OR_LATER = 0x80  # the PROTO opcode every pickle since protocol 2 starts with


class ModelFileError(Exception):
    """No model file, several candidates, or a file in none of the formats: the message says which."""


def find(model_dir: str) -> str:
    """The model file: a well-known name, else the only file with a model suffix, else the only file."""
    files = _files(model_dir)
    for name in NAMES:
        if name in files:
            return os.path.join(model_dir, name)
    candidates = [name for name in files if name.endswith(SUFFIXES) or name.startswith("xgboost-model")]
    if len(candidates) == 1:
        return os.path.join(model_dir, candidates[0])
    if not candidates and len(files) == 1:  # the SageMaker XGBoost container loads whatever file is there
        return os.path.join(model_dir, files[0])
    if candidates:
        problem = f"several candidate model files ({', '.join(candidates)})"
    else:
        problem = f"no model file (found {', '.join(files) or 'nothing'})"
    raise ModelFileError(
        f"no model_fn in inference.py and {problem} in {model_dir}; the default model_fn loads "
        f"{' or '.join(NAMES)}, or a single *{', *'.join(SUFFIXES)} file, in these formats: {FORMATS}"
    )


def load(path: str) -> Any:
    """Read the model in `path`, telling the format from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:1] == bytes([PICKLE_PROTOCOL_2_OR_LATER]):
        loaders = [("joblib/pickle", _load_joblib)]
    elif head.lstrip()[:1] == b"{" or head.startswith(b"binf"):  # JSON or UBJSON document, binary model header
        loaders = [("XGBoost", _load_booster)]
    else:  # joblib's compressed files, protocol 0/1 pickles, old binary models without a header
        loaders = [("joblib/pickle", _load_joblib), ("XGBoost", _load_booster)]
    failures = []
    for name, loader in loaders:
        try:
            return loader(path)
        except Exception as exc:
            if len(loaders) == 1:
                raise ModelFileError(
                    f"{path} looks like a {name} file but cannot be loaded: {type(exc).__name__}: {_short(exc)}"
                ) from exc
            failures.append(f"{name}: {type(exc).__name__}: {_short(exc)}")
    directory = os.path.dirname(path)
    raise ModelFileError(
        f"{path} is in none of the formats the default model_fn reads ({FORMATS}); "
        f"{'; '.join(failures)}; files in {directory}: {', '.join(_files(directory))}"
    )


def _files(model_dir: str) -> list[str]:
    if not os.path.isdir(model_dir):
        raise ModelFileError(f"model directory {model_dir} does not exist")
    return sorted(
        name
        for name in os.listdir(model_dir)
        if not name.startswith(".") and os.path.isfile(os.path.join(model_dir, name))
    )


def _load_joblib(path: str) -> Any:
    import joblib  # reads plain pickles as well as its own (compressed) files

    return joblib.load(path)  # the model artifact is trusted: it is what this endpoint serves


def _load_booster(path: str) -> Any:
    import xgboost

    booster = xgboost.Booster()
    with open(path, "rb") as f:
        booster.load_model(bytearray(f.read()))  # from memory: XGBoost tells the format by content, not suffix
    return booster


def _short(exc: Exception, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."
