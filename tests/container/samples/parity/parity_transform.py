"""transform_fn instead of the three hooks: the body arrives decoded for JSON and CSV."""

import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def transform_fn(model, request_body, content_type, accept):
    if content_type == "application/json":
        rows = np.array(json.loads(request_body))
    elif content_type == "text/csv":
        rows = np.array([[float(x) for x in line.split(",")] for line in request_body.strip().split("\n")])
    else:
        rows = np.frombuffer(request_body, dtype=np.float64).reshape(-1, 4)
    labels = model.predict(rows).tolist()
    if accept == "text/csv":
        return "\n".join(str(label) for label in labels)
    return json.dumps({"labels": labels}), "application/json"
