"""transform_fn instead of input_fn/predict_fn/output_fn; model_fn without a context argument."""


def model_fn(model_dir):
    return "reversed"


def transform_fn(model, body, content_type, accept, context):
    context.set_custom_attributes(f"content_type={content_type}")
    return body[::-1], f"{accept}; charset=utf-8"
