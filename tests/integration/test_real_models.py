"""Models and scripts written the way SageMaker users write them, released unchanged through the local stack.

Each is dropped into the bucket (with a manifest where a user would write one), released by the real state
machine into the real container, and invoked through its alias with the answer the model itself gives.
The scripts follow the public examples: text bodies parsed by hand, pandas imported at the top, the
framework image's helpers (`sagemaker_containers.beta.framework`, `worker.Response`), XGBoost models saved
in every format SageMaker's XGBoost image reads, the scikit_bring_your_own pickle, and a script that
brings its own `requirements.txt`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from dropship.smoke import DEFAULT_SAMPLE_REJECTED
from tests.artifacts import iris_model_bytes, tarball
from tests.integration.harness import Harness

SAMPLES = Path(__file__).resolve().parents[1] / "container" / "samples"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # setosa (0), virginica (2)
IRIS_CSV = "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3"
MISSING_PACKAGE = "dropship-test-package-that-does-not-exist==1.0"


def _csv_smoke(body: str, accept: str = "application/json", **expect: Any) -> dict[str, Any]:
    return {"smoke_test": [{"body": body, "content_type": "text/csv", "accept": accept, "expect": expect or {}}]}


def _release_live(stack: Harness, model: str, artifact: bytes, manifest: dict[str, Any] | None = None) -> str:
    """Release version 1 of ``model``; returns the endpoint its alias names."""
    outcome = stack.release(model, "1", artifact, manifest)
    assert outcome.status == "SUCCEEDED", outcome.cause
    alias = stack.alias(model)
    assert alias is not None and alias["version"] == "1"
    return str(alias["endpoint_name"])


def _invoke_alias(stack: Harness, model: str, body: bytes | str, content_type: str, accept: str | None = None) -> Any:
    """Invoke the endpoint the alias names, as `dropship invoke` does; returns (body, content type)."""
    alias = stack.alias(model)
    assert alias is not None
    extra = {"Accept": accept} if accept else {}
    reply = stack.runtime.invoke_endpoint(
        EndpointName=alias["endpoint_name"], Body=body, ContentType=content_type, **extra
    )
    return reply["Body"].read(), reply["ContentType"]


# -- scikit-learn scripts ------------------------------------------------------------------------------

TEXT_PARSING = """\
import json
import os
from io import StringIO

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type):
    if request_content_type == "text/csv":
        if "\\n" not in request_body.strip():  # one row: split it by hand
            return np.array([[float(x) for x in request_body.strip().split(",")]])
        return np.loadtxt(StringIO(request_body), delimiter=",", ndmin=2)
    raise ValueError("{} not supported by script!".format(request_content_type))


def predict_fn(input_data, model):
    return model.predict(input_data)


def output_fn(prediction, content_type):
    return json.dumps({"classes": [int(p) for p in prediction]})
"""


def test_a_script_that_parses_the_text_body_itself(stack: Harness) -> None:
    artifact = tarball({"model.joblib": iris_model_bytes(), "code/inference.py": TEXT_PARSING.encode()})
    _release_live(stack, "text-parsing", artifact, _csv_smoke("5.1,3.5,1.4,0.2", json_equals={"classes": [0]}))

    body, _ = _invoke_alias(stack, "text-parsing", IRIS_CSV, "text/csv")
    assert json.loads(body) == {"classes": [0, 2]}
    body, _ = _invoke_alias(stack, "text-parsing", "6.7,3.0,5.2,2.3", "text/csv")
    assert json.loads(body) == {"classes": [2]}


def test_pandas_at_the_top_and_the_framework_helpers_with_worker_response(stack: Harness) -> None:
    # The inference-pipeline featurizer example: pandas parses the CSV, worker.Response answers
    featurizer = (SAMPLES / "sklearn_featurizer" / "inference.py").read_bytes()
    artifact = tarball({"model.joblib": iris_model_bytes(), "code/inference.py": featurizer})
    _release_live(stack, "featurizer", artifact, _csv_smoke(IRIS_CSV, json_schema={"required": ["instances"]}))

    model = joblib.load(io.BytesIO(iris_model_bytes()))
    expected = np.round(model.predict_proba(np.array(IRIS_ROWS)), 4).tolist()
    body, content_type = _invoke_alias(stack, "featurizer", IRIS_CSV, "text/csv", "application/json")
    assert content_type == "application/json"
    assert json.loads(body) == {"instances": [{"features": row} for row in expected]}
    body, content_type = _invoke_alias(stack, "featurizer", IRIS_CSV, "text/csv", "text/csv")
    assert content_type.startswith("text/csv")
    assert [[float(v) for v in line.split(",")] for line in body.decode().split()] == expected


def test_the_scikit_bring_your_own_pickle_needs_no_code(stack: Harness) -> None:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    # The classic example's artifact: a pickled decision tree over labelled iris rows, CSV in and out
    iris = load_iris(as_frame=True)
    labels = iris.target.map(dict(enumerate(iris.target_names)))
    tree = DecisionTreeClassifier(max_leaf_nodes=5, random_state=0).fit(iris.data.to_numpy(), labels)
    artifact = tarball({"decision-tree-model.pkl": pickle.dumps(tree)})
    _release_live(stack, "byo-tree", artifact, _csv_smoke("5.1,3.5,1.4,0.2", "text/csv", contains="setosa"))

    rows = iris.data.iloc[[0, 60, 120]].to_csv(header=False, index=False)
    body, _ = _invoke_alias(stack, "byo-tree", rows, "text/csv", "text/csv")
    assert body.decode() == "setosa\nversicolor\nvirginica\n"


def test_a_six_feature_model_without_a_manifest_goes_live_with_a_warning(stack: Harness) -> None:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    # Given a model of 6 features and no manifest: the stack's default sample (4 iris features) does not fit
    features, labels = make_classification(n_samples=200, n_features=6, random_state=7)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)

    # When it is released, Then it goes live: the default sample's 4xx is a warning, not a failure
    _release_live(stack, "six-features", tarball({"model.joblib": buffer.getvalue()}))
    warning = DEFAULT_SAMPLE_REJECTED.format(status=400)
    (record,) = stack.releases("six-features")
    assert record["warnings"] == [warning]
    assert record["smoke"][0]["status"] == 400 and record["smoke"][0]["passed"] is True
    succeeded = stack.release_events("six-features")[-1]
    assert succeeded["detail-type"] == "Release Succeeded"
    assert succeeded["detail"]["warnings"] == [warning]

    # And it answers 6-feature rows with its own predictions
    rows = features[:3].round(6)
    body, _ = _invoke_alias(stack, "six-features", json.dumps({"instances": rows.tolist()}), "application/json")
    assert json.loads(body) == {"predictions": model.predict(rows).tolist()}


# -- XGBoost, every format the XGBoost image reads ------------------------------------------------------


@cache
def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    features, target = load_diabetes(return_X_y=True)
    return features.round(5), target


@cache
def _booster() -> Any:
    import xgboost as xgb

    features, target = _diabetes()
    params = {"max_depth": 3, "eta": 0.3, "objective": "reg:squarederror"}
    return xgb.train(params, xgb.DMatrix(features, label=target), num_boost_round=10)


def _saved(name: str, suffix: str) -> bytes:
    """The booster as `save_model` writes it: the format follows the suffix; renamed to ``name`` after."""
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # XGBoost warns that the legacy binary format is deprecated
        path = os.path.join(scratch, "model" + suffix)
        _booster().save_model(path)
        return Path(path).read_bytes()


XGBOOST_FORMATS = {
    "json": ("model.json", ".json"),
    "ubjson": ("model.ubj", ".ubj"),
    "legacy-binary": ("xgboost-model", ".deprecated"),  # XGBoost < 2's save_model("xgboost-model")
    "suffix-less": ("xgboost-model", ""),  # XGBoost 3's save_model("xgboost-model"): UBJSON
}


@pytest.mark.parametrize("fmt", XGBOOST_FORMATS, ids=list(XGBOOST_FORMATS))
def test_an_xgboost_booster_in_each_format_serves_its_predictions(stack: Harness, fmt: str) -> None:
    import xgboost as xgb

    name, suffix = XGBOOST_FORMATS[fmt]
    features, _ = _diabetes()
    first_row = ",".join(str(v) for v in features[0])
    model = f"xgb-{fmt}"
    _release_live(stack, model, tarball({name: _saved(name, suffix)}), _csv_smoke(first_row, status=200))

    rows = features[:3]
    body, _ = _invoke_alias(stack, model, "\n".join(",".join(str(v) for v in row) for row in rows), "text/csv")
    expected = _booster().predict(xgb.DMatrix(rows.astype(np.float32)))
    assert json.loads(body) == pytest.approx(expected.tolist(), rel=1e-6)


def test_a_pickled_xgboost_scikit_learn_wrapper_serves_its_predictions(stack: Harness) -> None:
    import xgboost as xgb

    features, target = _diabetes()
    wrapper = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(features, target)
    first_row = ",".join(str(v) for v in features[0])
    _release_live(stack, "xgb-wrapper", tarball({"model.pkl": pickle.dumps(wrapper)}), _csv_smoke(first_row))

    rows = features[:3]
    body, _ = _invoke_alias(stack, "xgb-wrapper", json.dumps(rows.tolist()), "application/json")
    assert json.loads(body) == pytest.approx(wrapper.predict(rows.astype(np.float32)).tolist(), rel=1e-6)


# -- a script with its own requirements.txt ---------------------------------------------------------------

WITH_REQUIREMENTS = """\
import json
import os

import inflection  # not in the image: code/requirements.txt brings it
import joblib
import pandas as pd

SPECIES = ["setosa", "versicolor", "virginica"]


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type):
    rows = json.loads(request_body)["rows"]
    return pd.DataFrame(rows, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])


def predict_fn(frame, model):
    return [inflection.titleize(SPECIES[label]) for label in model.predict(frame.to_numpy())]


def output_fn(prediction, accept):
    return json.dumps({"species": prediction}), "application/json"
"""


def test_a_script_with_a_requirements_txt_gets_its_packages(stack: Harness) -> None:
    requirements = b"scikit-learn\npandas\ninflection==0.5.1\n"
    artifact = tarball(
        {
            "model.joblib": iris_model_bytes(),
            "code/inference.py": WITH_REQUIREMENTS.encode(),
            "code/requirements.txt": requirements,
        }
    )
    smoke = {"smoke_test": [{"body": json.dumps({"rows": IRIS_ROWS[:1]}), "expect": {"contains": "Setosa"}}]}
    _release_live(stack, "with-requirements", artifact, smoke)

    body, _ = _invoke_alias(stack, "with-requirements", json.dumps({"rows": IRIS_ROWS}), "application/json")
    assert json.loads(body) == {"species": ["Setosa", "Virginica"]}


FAILING_REQUIREMENTS = {
    "missing": (
        f"pandas\n{MISSING_PACKAGE}\n",
        f"ERROR: Could not find a version that satisfies the requirement {MISSING_PACKAGE}",
    ),
    "refused": (
        "--index-url https://packages.example.invalid/simple\npandas\n",
        "code/requirements.txt line 1: --index-url is refused because it changes where packages come from",
    ),
}


@pytest.mark.parametrize("case", FAILING_REQUIREMENTS, ids=list(FAILING_REQUIREMENTS))
def test_requirements_that_cannot_be_installed_fail_the_release_with_the_reason_first(
    stack: Harness, case: str
) -> None:
    requirements, reason = FAILING_REQUIREMENTS[case]
    artifact = tarball({"model.joblib": iris_model_bytes(), "code/requirements.txt": requirements.encode()})

    outcome = stack.release(f"bad-reqs-{case}", "1", artifact)

    assert (outcome.status, outcome.error) == ("FAILED", "EndpointFailed")
    assert (outcome.cause or "").startswith(reason), outcome.cause
    assert stack.alias(f"bad-reqs-{case}") is None
