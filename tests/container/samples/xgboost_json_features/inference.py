"""JSON instances with features, else the image's decoders; a worker.Response out."""

import json
import os
import pickle as pkl

import numpy as np
import xgboost as xgb
from sagemaker_containers.beta.framework import content_types, encoders, worker
from sagemaker_xgboost_container import encoder as xgb_encoders


def input_fn(input_data: str, content_type):
    if content_type == content_types.JSON:
        obj = json.loads(input_data)
        features = obj["instances"][0]["features"]
        array = np.array(features).reshape((1, -1))
        return xgb.DMatrix(array)
    else:
        return xgb_encoders.decode(input_data, content_type)


def model_fn(model_dir):
    model_file = os.path.join(model_dir, "model.bin")
    with open(model_file, "rb") as f:
        model = pkl.load(f)
    return model


def output_fn(prediction, accept: str) -> worker.Response:
    score = np.array(prediction)[0]
    if accept == "application/json":
        return_value = {"predictions": [{"score": score.astype(float), "predicted_label": int(score > 150)}]}
        return worker.Response(json.dumps(return_value), mimetype=accept)
    elif accept == "text/csv":
        return_value = "high" if score > 150 else "low"
        return worker.Response(encoders.encode([return_value], accept), mimetype=accept)
    else:
        raise RuntimeError(f"{accept} accept type is not supported.")
