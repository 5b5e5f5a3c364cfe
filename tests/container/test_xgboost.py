"""XGBoost models as SageMaker users save them, served with no code and with the XGBoost image's scripts.

Every format the default model_fn reads (JSON, UBJSON, legacy binary, pickled Booster, pickled or
joblib'd scikit-learn wrappers; with and without a suffix) is served by a real `serve` process and
answers the model's own predictions. The defaults are compared with the XGBoost image's (on
sagemaker-inference's Transformer, in-process) request by request.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pytest
import requests
import xgboost as xgb
from sklearn.datasets import load_diabetes

from dropship_serve import model_files
from tests.container.parity import Toolkit, XGBoostImageHandler, http_answer

if TYPE_CHECKING:
    from tests.container.conftest import ServeProcess

SAMPLES = Path(__file__).resolve().parent / "samples"
X, Y = load_diabetes(return_X_y=True)
ROWS = X[:3].round(5)
CSV_ROWS = "\n".join(",".join(str(v) for v in row) for row in ROWS).encode()
LIBSVM_ROWS = "\n".join("0 " + " ".join(f"{i + 1}:{v}" for i, v in enumerate(row)) for row in ROWS).encode()


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    return xgb.train({"max_depth": 3, "eta": 0.3, "objective": "reg:squarederror"}, xgb.DMatrix(X, label=Y), 20)


def _save(booster: xgb.Booster, path: Path, fmt: str) -> None:
    """Save as users do: save_model picks the format by suffix (JSON, UBJSON, `.deprecated` binary)."""
    if fmt == "pickle":
        with open(path, "wb") as f:
            pickle.dump(booster, f)
        return
    suffix = {"json": ".json", "ubj": ".ubj", "legacy": ".deprecated"}[fmt]
    saved = path.with_name("saving" + suffix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # XGBoost warns that the legacy binary format is deprecated
        booster.save_model(saved)
    os.replace(saved, path)


BOOSTER_FILES = [
    ("xgboost-model", "ubj"),  # what save_model("xgboost-model") writes in XGBoost 3
    ("xgboost-model", "pickle"),  # the abalone example's pickle.dump
    ("xgboost-model", "legacy"),  # XGBoost < 2's save_model without suffix
    ("xgboost-model", "json"),
    ("model.json", "json"),
    ("model.ubj", "ubj"),
    ("model.bin", "legacy"),
    ("my-booster.model", "ubj"),
    ("xgboost-model.json", "json"),
    ("model.pkl", "pickle"),
    ("abalone-booster-v3", "ubj"),  # any name, when it is the only file
]


@pytest.fixture(scope="module")
def wrappers() -> dict[str, Any]:
    return {
        "model.joblib:XGBRegressor": xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X, Y),
        "model.pkl:XGBClassifier": xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, (Y > 140).astype(int)),
    }


@pytest.fixture(scope="module")
def format_servers(
    booster: xgb.Booster,
    wrappers: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    start_serve: Callable[..., ServeProcess],
) -> dict[str, ServeProcess]:
    """One serve process per saved model, no inference.py: the default model_fn finds and reads each."""
    servers = {}
    for name, fmt in BOOSTER_FILES:
        model_dir = tmp_path_factory.mktemp("xgb")
        _save(booster, model_dir / name, fmt)
        servers[f"{name}:{fmt}"] = start_serve(model_dir)
    for key, estimator in wrappers.items():
        model_dir = tmp_path_factory.mktemp("xgb")
        path = model_dir / key.split(":")[0]
        if path.suffix == ".joblib":
            joblib.dump(estimator, path)
        else:
            with open(path, "wb") as f:
                pickle.dump(estimator, f)
        servers[key] = start_serve(model_dir)
    for server in servers.values():
        server.wait_healthy()
    return servers


@pytest.mark.parametrize("key", [f"{name}:{fmt}" for name, fmt in BOOSTER_FILES])
def test_every_booster_format_is_served_with_its_predictions(
    key: str, booster: xgb.Booster, format_servers: dict[str, ServeProcess]
) -> None:
    response = requests.post(
        format_servers[key].url + "/invocations", data=CSV_ROWS, headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json() == booster.predict(xgb.DMatrix(ROWS.astype(np.float32))).tolist()


@pytest.mark.parametrize("key", ["model.joblib:XGBRegressor", "model.pkl:XGBClassifier"])
def test_scikit_learn_wrappers_are_served_with_their_predictions(
    key: str, wrappers: dict[str, Any], format_servers: dict[str, ServeProcess]
) -> None:
    response = requests.post(format_servers[key].url + "/invocations", json=ROWS.tolist(), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == wrappers[key].predict(ROWS.astype(np.float32)).tolist()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (CSV_ROWS, "text/csv"),
        (LIBSVM_ROWS, "text/libsvm"),
        (LIBSVM_ROWS, "text/x-libsvm"),
        (json.dumps(ROWS.tolist()).encode(), "application/json"),
        (None, "application/x-npy"),
    ],
)
def test_a_booster_takes_csv_libsvm_json_and_npy(
    body: bytes | None, content_type: str, booster: xgb.Booster, format_servers: dict[str, ServeProcess]
) -> None:
    if body is None:
        buffer = io.BytesIO()
        np.save(buffer, ROWS)
        body = buffer.getvalue()
    server = format_servers["xgboost-model:ubj"]
    response = requests.post(server.url + "/invocations", data=body, headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == pytest.approx(booster.predict(xgb.DMatrix(ROWS)).tolist(), rel=1e-6)


def test_too_many_features_for_a_booster_is_a_400(format_servers: dict[str, ServeProcess]) -> None:
    server = format_servers["model.json:json"]
    response = requests.post(server.url + "/invocations", json=[[0.1] * 11], timeout=30)
    assert response.status_code == 400
    assert "at most 10 features" in response.json()["error"]["message"]


# -- the XGBoost image's defaults, request by request -------------------------------------------------


@pytest.fixture(scope="module")
def abalone(
    booster: xgb.Booster, tmp_path_factory: pytest.TempPathFactory, start_serve: Callable[..., ServeProcess]
) -> tuple[Toolkit, ServeProcess]:
    """abalone.py (a training-and-serving script importing the image's helpers) with a pickled Booster."""
    model_dir = tmp_path_factory.mktemp("abalone")
    _save(booster, model_dir / "xgboost-model", "pickle")
    shutil.copytree(SAMPLES / "xgboost_abalone", model_dir / "code")
    server = start_serve(model_dir, {"SAGEMAKER_PROGRAM": "abalone.py"})
    from dropship_serve import compat

    compat.install()  # the toolkit imports the same script, with its sagemaker_containers imports
    toolkit = Toolkit(model_dir, "abalone", XGBoostImageHandler())
    server.wait_healthy()
    return toolkit, server


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (CSV_ROWS, {"Content-Type": "text/csv"}),
        (CSV_ROWS, {"Content-Type": "text/csv", "Accept": "text/csv"}),
        (CSV_ROWS.split(b"\n")[0], {"Content-Type": "text/csv", "Accept": "*/*"}),
        (b"0.1,,0.3,0.2,,0.1,0.0,0.1,0.2,0.3", {"Content-Type": "text/csv"}),  # empty fields are missing values
        (LIBSVM_ROWS, {"Content-Type": "text/libsvm"}),
        (b"1 3:0.05 7:-0.02\n0 1:0.03", {"Content-Type": "text/x-libsvm", "Accept": "text/csv"}),
    ],
    ids=["csv", "csv-csv", "csv-one-row", "csv-missing", "libsvm", "libsvm-sparse"],
)
def test_defaults_answer_as_the_xgboost_image(
    abalone: tuple[Toolkit, ServeProcess], body: bytes, headers: dict[str, str]
) -> None:
    toolkit, server = abalone
    expected = toolkit.invoke(body, headers)
    assert expected.status == 200, expected
    assert http_answer(server, body, headers) == expected


def test_json_which_the_xgboost_image_refuses_is_answered(abalone: tuple[Toolkit, ServeProcess]) -> None:
    toolkit, server = abalone
    body, headers = json.dumps(ROWS.tolist()).encode(), {"Content-Type": "application/json"}
    assert toolkit.invoke(body, headers).status == 500  # no JSON decoder in the XGBoost image
    answer = http_answer(server, body, headers)
    assert answer.status == 200
    assert json.loads(answer.body) == json.loads(toolkit.invoke(CSV_ROWS, {"Content-Type": "text/csv"}).body)


# -- the XGBoost image's scripts ----------------------------------------------------------------------


def test_feature_contributions_script(
    booster: xgb.Booster, tmp_path_factory: pytest.TempPathFactory, start_serve: Callable[..., ServeProcess]
) -> None:
    model_dir = tmp_path_factory.mktemp("contribs")
    _save(booster, model_dir / "xgboost-model", "pickle")
    shutil.copytree(SAMPLES / "xgboost_contributions", model_dir / "code")
    server = start_serve(model_dir)
    server.wait_healthy()
    headers = {"Content-Type": "text/libsvm", "Accept": "text/csv"}
    response = requests.post(server.url + "/invocations", data=LIBSVM_ROWS, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv"
    values = [float(v) for v in response.text.split(",")]
    matrix = xgb.DMatrix(ROWS)
    assert values[0] == pytest.approx(float(booster.predict(matrix)[0]))
    assert values[1:] == pytest.approx(booster.predict(matrix, pred_contribs=True)[0].tolist(), abs=1e-5)


def test_json_features_script_with_worker_response(
    booster: xgb.Booster, tmp_path_factory: pytest.TempPathFactory, start_serve: Callable[..., ServeProcess]
) -> None:
    model_dir = tmp_path_factory.mktemp("features")
    _save(booster, model_dir / "model.bin", "pickle")
    shutil.copytree(SAMPLES / "xgboost_json_features", model_dir / "code")
    server = start_serve(model_dir)
    server.wait_healthy()
    score = float(booster.predict(xgb.DMatrix(ROWS[:1].astype(np.float64)))[0])
    body = json.dumps({"instances": [{"features": ROWS[0].tolist()}]})
    response = requests.post(
        server.url + "/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"predictions": [{"score": pytest.approx(score), "predicted_label": int(score > 150)}]}
    csv_response = requests.post(
        server.url + "/invocations",
        data=CSV_ROWS.split(b"\n")[0],
        headers={"Content-Type": "text/csv", "Accept": "text/csv"},
        timeout=30,
    )
    assert csv_response.status_code == 200, csv_response.text
    assert csv_response.headers["content-type"] == "text/csv; charset=utf-8"  # as Flask labels worker.Response
    assert csv_response.text == ("high\n" if score > 150 else "low\n")


# -- which file, and what is said when there is none ---------------------------------------------------


def test_an_unknown_file_is_named_with_the_formats_read(tmp_path: Path) -> None:
    (tmp_path / "xgboost-model").write_bytes(b"\x00\x01not a model at all")
    (tmp_path / "notes.txt").write_text("trained on Tuesday")
    with pytest.raises(model_files.ModelFileError) as raised:
        model_files.load(model_files.find(str(tmp_path)))
    message = str(raised.value)
    assert "xgboost-model is in none of the formats" in message
    assert "notes.txt" in message and "UBJSON" in message and "joblib or pickle" in message


def test_a_directory_without_a_model_file_names_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a")
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(model_files.ModelFileError, match=r"no model file \(found data.csv, notes.txt\)"):
        model_files.find(str(tmp_path))


def test_dotfiles_and_code_are_not_model_files(tmp_path: Path) -> None:
    (tmp_path / ".DS_Store").write_bytes(b"\x00")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("")
    (tmp_path / "booster").write_bytes(b"{}")
    assert model_files.find(str(tmp_path)) == str(tmp_path / "booster")


def test_several_candidates_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.pkl").write_bytes(b"")
    with pytest.raises(model_files.ModelFileError, match=r"several candidate model files \(a.json, b.pkl\)"):
        model_files.find(str(tmp_path))


def test_a_broken_pickle_says_so(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"x": 1})[:-4])
    with pytest.raises(model_files.ModelFileError, match="looks like a joblib/pickle file but cannot be loaded"):
        model_files.load(model_files.find(str(tmp_path)))
