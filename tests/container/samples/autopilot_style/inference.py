"""Errors answered with worker.Response and a status, passed along by predict_fn and output_fn, in the style
of the scripts SageMaker Autopilot generates."""

import http.client as http_client
import os

import joblib
import numpy as np
from sagemaker_containers.beta.framework import encoders, worker


def model_fn(model_dir):
    return joblib.load(filename=os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type):
    content_type = request_content_type.lower() if request_content_type else "text/csv"
    content_type = content_type.split(";")[0].strip()
    if content_type == "text/csv":
        return encoders.decode(request_body, content_type)
    return worker.Response(
        response=f"'{request_content_type}' is an unsupported content type.",
        status=http_client.UNSUPPORTED_MEDIA_TYPE,
    )


def predict_fn(input_object, model):
    if isinstance(input_object, worker.Response):
        return input_object
    try:
        return model.predict(np.atleast_2d(input_object))
    except ValueError as e:
        return worker.Response(response="{}".format(str(e) or "Unknown error."), status=http_client.BAD_REQUEST)


def output_fn(prediction, accept_type):
    if isinstance(prediction, worker.Response):
        return prediction
    if accept_type == "text/csv":
        return worker.Response(
            response=encoders.encode(prediction, accept_type), status=http_client.OK, mimetype=accept_type
        )
    return worker.Response(response=f"Accept type '{accept_type}' is not supported.", status=http_client.NOT_ACCEPTABLE)


def execution_parameters_fn():
    if os.getenv("AUTOML_TRANSFORM_MODE") == "feature-transform":
        return worker.Response(response='{"MaxPayloadInMB":1}', status=http_client.OK, mimetype="application/json")
    return worker.Response(response='{"MaxPayloadInMB":6}', status=http_client.OK, mimetype="application/json")
