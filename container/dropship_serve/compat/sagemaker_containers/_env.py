"""Where the serving environment is, read from the same variables as sagemaker-containers' ServingEnv."""

from __future__ import annotations

import os

model_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
code_dir = os.path.join(model_dir, "code")


class ServingEnv:
    """The settings of the serving container, read when created."""

    def __init__(self) -> None:
        self.model_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
        program = os.environ.get("SAGEMAKER_PROGRAM", "inference.py")
        self.module_name = program[:-3] if program.endswith(".py") else program
        self.module_dir = os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", os.path.join(self.model_dir, "code"))
        self.default_accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")
        self.http_port = os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")
        self.model_server_timeout = int(os.environ.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "60"))
        self.model_server_workers = int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or os.cpu_count() or 1)
        self.use_nginx = False
