"""Scripts and artifacts written for SageMaker's scikit-learn image, served unchanged over real HTTP.

worker.Response answers are compared with what Flask, the images' server, sends for the same Response;
the scikit_bring_your_own artifact with what that example's predictor.py answers.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flask
import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.tree import DecisionTreeClassifier

from tests.container.parity import Answer, http_answer

if TYPE_CHECKING:
    from tests.container.conftest import ServeProcess

SAMPLES = Path(__file__).resolve().parent / "samples"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
CSV_ROWS = b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3"


class ImageResponse(flask.Response):
    """sagemaker-containers' worker.Response: a Flask response whose default type is JSON."""

    default_mimetype = "application/json"


def flask_answer(*args: Any, **kwargs: Any) -> Answer:
    """What the images' Flask server sends for worker.Response(*args, **kwargs) returned by a hook."""
    response = ImageResponse(*args, **kwargs)
    return Answer(response.status_code, response.get_data(), response.headers["Content-Type"])


@pytest.fixture(scope="module")
def serve_sample(
    sklearn_model_file: Path, tmp_path_factory: pytest.TempPathFactory, start_serve: Callable[..., ServeProcess]
) -> Callable[[str], ServeProcess]:
    """A healthy serve process for the iris model with code/ copied from a sample (one per sample)."""
    started: dict[str, ServeProcess] = {}

    def serve(sample: str) -> ServeProcess:
        if sample not in started:
            model_dir = tmp_path_factory.mktemp(sample)
            shutil.copy(sklearn_model_file, model_dir / "model.joblib")
            shutil.copytree(SAMPLES / sample, model_dir / "code")
            started[sample] = start_serve(model_dir)
            started[sample].wait_healthy()
        return started[sample]

    return serve


def test_featurizer_parses_with_pandas_and_answers_with_worker_response(
    serve_sample: Callable[[str], ServeProcess], sklearn_model_file: Path
) -> None:
    server = serve_sample("sklearn_featurizer")
    probabilities = np.round(joblib.load(sklearn_model_file).predict_proba(np.array(ROWS)), 4)

    answer = http_answer(server, CSV_ROWS, {"Content-Type": "text/csv", "Accept": "application/json"})
    assert (answer.status, answer.content_type) == (200, "application/json")
    assert json.loads(answer.body) == {"instances": [{"features": row} for row in probabilities.tolist()]}

    answer = http_answer(server, CSV_ROWS, {"Content-Type": "text/csv", "Accept": "text/csv"})
    assert (answer.status, answer.content_type) == (200, flask_answer(b"", mimetype="text/csv").content_type)
    assert [[float(v) for v in row] for row in csv.reader(io.StringIO(answer.body.decode()))] == probabilities.tolist()


@pytest.mark.parametrize(
    ("body", "headers", "response"),
    [
        (b"x", {"Content-Type": "application/json"}, (("'application/json' is an unsupported content type.",), 415)),
        (CSV_ROWS, {"Content-Type": "text/csv", "Accept": "application/json"}, None),
        (b"1,2,3", {"Content-Type": "text/csv", "Accept": "text/csv"}, None),
    ],
    ids=["415-from-input_fn", "406-from-output_fn", "400-from-predict_fn"],
)
def test_worker_response_statuses_are_sent_as_flask_sends_them(
    serve_sample: Callable[[str], ServeProcess],
    body: bytes,
    headers: dict[str, str],
    response: tuple[tuple[str], int] | None,
) -> None:
    answer = http_answer(serve_sample("autopilot_style"), body, headers)
    if response is None:  # the message comes from scikit-learn or the script: check the rest against Flask
        expected = flask_answer(answer.body, status=answer.status)
        assert answer.status in (400, 406)
    else:
        args, status = response
        expected = flask_answer(*args, status=status)
    assert answer == expected


def test_worker_response_success_is_sent_as_flask_sends_it(serve_sample: Callable[[str], ServeProcess]) -> None:
    answer = http_answer(serve_sample("autopilot_style"), CSV_ROWS, {"Content-Type": "text/csv", "Accept": "text/csv"})
    assert answer == flask_answer(b"0\n2\n", status=200, mimetype="text/csv")


def test_execution_parameters_fn_answers_execution_parameters(serve_sample: Callable[[str], ServeProcess]) -> None:
    response = requests.get(serve_sample("autopilot_style").url + "/execution-parameters", timeout=10)
    assert (response.status_code, response.text) == (200, '{"MaxPayloadInMB":6}')
    assert response.headers["content-type"] == "application/json"


def test_scikit_bring_your_own_artifact_needs_no_code(
    tmp_path_factory: pytest.TempPathFactory, start_serve: Callable[..., ServeProcess]
) -> None:
    """The classic example's layout: a pickled decision tree trained on labelled iris rows, CSV in and out."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    labels = iris.target.map(dict(enumerate(iris.target_names)))
    model = DecisionTreeClassifier(max_leaf_nodes=5).fit(iris.data.to_numpy(), labels)
    model_dir = tmp_path_factory.mktemp("scikit_bring_your_own")
    with open(model_dir / "decision-tree-model.pkl", "wb") as out:
        pickle.dump(model, out)
    server = start_serve(model_dir)
    server.wait_healthy()

    body = iris.data.iloc[[0, 60, 120]].to_csv(header=False, index=False).encode()
    answer = http_answer(server, body, {"Content-Type": "text/csv", "Accept": "text/csv"})

    # What the example's predictor.py answers for the same body
    data = pd.read_csv(io.StringIO(body.decode()), header=None)
    expected = pd.DataFrame({"results": model.predict(data.to_numpy())}).to_csv(header=False, index=False)
    assert answer.status == 200
    assert answer.body.decode() == expected == "setosa\nversicolor\nvirginica\n"
