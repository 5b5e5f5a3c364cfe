"""A scikit-learn featurizer of an inference pipeline, in the style of the public example: pandas parses the
CSV text, worker.Response carries the answer."""

import json
import os
from io import StringIO

import joblib
import numpy as np
import pandas as pd
from sagemaker_containers.beta.framework import content_types, encoders, env, modules, transformer, worker  # noqa: F401

feature_columns_names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(input_data, content_type):
    if content_type == "text/csv":
        df = pd.read_csv(StringIO(input_data), header=None)
        df.columns = feature_columns_names
        return df
    else:
        raise ValueError(f"{content_type} not supported by script!")


def predict_fn(input_data, model):
    probabilities = model.predict_proba(input_data.to_numpy())
    return np.round(probabilities, 4)


def output_fn(prediction, accept):
    if accept == "application/json":
        instances = []
        for row in prediction.tolist():
            instances.append({"features": row})
        json_output = {"instances": instances}
        return worker.Response(json.dumps(json_output), mimetype=accept)
    elif accept == "text/csv":
        return worker.Response(encoders.encode(prediction, accept), mimetype=accept)
    else:
        raise RuntimeError(f"{accept} accept type is not supported by this script.")
