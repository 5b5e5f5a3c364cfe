"""A script built on sagemaker-inference's own helpers, with the context argument and toolkit errors."""

import os

import joblib
from sagemaker_inference import content_types, decoder, encoder, errors


def model_fn(model_dir, context):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(input_data, content_type, context):
    if content_type == "application/x-refuse":
        raise errors.GenericInferenceToolkitError(422, "this model refuses such bodies")
    if content_type not in (content_types.JSON, content_types.CSV, content_types.NPY):
        raise errors.UnsupportedFormatError(content_type)
    data = decoder.decode(input_data, content_type)
    return data.reshape(1, -1) if data.ndim == 1 else data


def predict_fn(data, model, context):
    if data.shape[1] == 1:
        raise RuntimeError("a model error the client must not see")
    return model.predict(data)


def output_fn(prediction, accept, context):
    if accept not in encoder.SUPPORTED_CONTENT_TYPES:
        raise errors.UnsupportedFormatError(accept)
    return encoder.encode(prediction, accept), accept
