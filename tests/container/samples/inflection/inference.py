"""A script importing a package the image does not have, listed in code/requirements.txt."""

import json

import inflection  # installed from code/requirements.txt


def model_fn(model_dir):
    return inflection


def input_fn(body, content_type):
    return json.loads(body)["words"]


def predict_fn(words, model):
    return {"camelized": [model.camelize(word) for word in words]}
