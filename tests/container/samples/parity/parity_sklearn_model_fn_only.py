"""The most common scikit-learn script: only model_fn; decoding, predicting and encoding are the container's."""

import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
