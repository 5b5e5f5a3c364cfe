"""Stand-ins for the helper modules that scripts written for AWS's framework images import.

This directory holds top-level packages, `sagemaker_containers` and `sagemaker_xgboost_container`, with
the parts of them an inference script uses (encoders, content types, errors, `worker.Response`, the
XGBoost DMatrix decoders). `install()` appends it to `sys.path` before the user's code is imported, so
the real package wins if `code/requirements.txt` installs it. container/README.md lists what is covered.
"""

from __future__ import annotations

import os
import sys

PATH = os.path.dirname(os.path.abspath(__file__))


def install() -> None:
    """Make the stand-ins importable, after every installed package."""
    if PATH not in sys.path:
        sys.path.append(PATH)
