"""A custom inference.py exercising every hook, the context argument and the error mapping."""

import json
import os
import time

from dropship_serve import UnsupportedContentTypeError


class UnsupportedFormatError(Exception):
    """Named like sagemaker-inference-toolkit's error: in output_fn it means "try another Accept"."""


def model_fn(model_dir, context):
    gate = os.environ.get("TEST_LOAD_GATE")
    if gate:
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
    if os.environ.get("TEST_FAIL_LOAD"):
        raise RuntimeError("cannot load: weights are corrupt")
    with open(os.path.join(model_dir, "scale.txt")) as f:
        return {"scale": float(f.read()), "warmed": False, "model_dir_seen": model_dir == context.model_dir}


def model_warmup_fn(model_dir, model):  # sagemaker-inference's signature
    model["warmed"] = True


def input_fn(body, content_type, context):
    if content_type != "application/json":
        raise UnsupportedContentTypeError(f"this model only reads application/json, not {content_type}")
    return json.loads(body)  # invalid JSON raises ValueError: a 400


def predict_fn(data, model, context):
    if data.get("started_file"):  # lets a test await "the prediction is running" without sleeping
        open(data["started_file"], "w").close()
    if data.get("sleep"):
        time.sleep(data["sleep"])
    if data.get("fail"):
        raise KeyError("secret-internal-detail")
    if "big" in data:
        return {"big": data["big"]}
    return {
        "doubled": [x * model["scale"] for x in data["values"]],
        "warmed": model["warmed"],
        "model_dir_seen": model["model_dir_seen"],
        "custom_attributes": context.custom_attributes,
        "pid": os.getpid(),
    }


def output_fn(prediction, accept, context):
    if "big" in prediction:
        return b"x" * prediction["big"], "application/octet-stream"
    if context.custom_attributes:
        context.set_custom_attributes("echo=" + context.custom_attributes)
    if accept == "application/json":
        return json.dumps(prediction).encode(), "application/json"
    if accept == "text/plain":
        return "doubled=" + ",".join(str(x) for x in prediction["doubled"])
    raise UnsupportedFormatError(accept)
