"""A scikit-learn script that parses the request text itself, as many public examples do."""

import io
import json
import os
from io import StringIO

import joblib
import numpy as np
import pandas as pd

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type):
    if request_content_type == "text/csv":
        frame = pd.read_csv(StringIO(request_body), header=None, names=FEATURES)
        return frame.to_numpy()
    if request_content_type == "application/json":
        rows = json.loads(request_body)["rows"]
        return np.array(rows)
    if request_content_type == "text/plain":  # "5.1 3.5 1.4 0.2" per line, arrives as bytes
        lines = request_body.decode("utf-8").strip().split("\n")
        return np.array([[float(x) for x in line.split()] for line in lines])
    if request_content_type == "application/x-semicolons":  # "5.1;3.5;1.4;0.2", bytes too
        text = request_body.decode("utf-8").replace(";", ",")
        return np.loadtxt(StringIO(text), delimiter=",", ndmin=2)
    raise ValueError(f"{request_content_type} not supported by script!")


def predict_fn(input_data, model):
    return model.predict_proba(input_data)


def output_fn(prediction, accept):
    if accept == "application/json":
        return json.dumps({"probabilities": prediction.round(6).tolist()})
    if accept == "text/csv":
        return "\n".join(",".join(f"{p:.6f}" for p in row) for row in prediction).encode("utf-8")
    if accept == "application/x-npy":
        buffer = io.BytesIO()
        np.save(buffer, prediction)
        return buffer.getvalue(), "application/x-npy"
    raise ValueError(f"{accept} accept type is not supported by this script.")
