"""dropship's stand-in for the inference side of `sagemaker-containers`, the helper library of SageMaker's
scikit-learn and XGBoost images: `from sagemaker_containers.beta.framework import encoders, worker` works.

Training helpers (`entry_point`, `modules`) are importable so that a training-and-serving script loads,
but hold nothing: training does not run in an inference container.
"""
