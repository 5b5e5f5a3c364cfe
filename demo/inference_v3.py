"""Version 3 of the demo model: new feature handling with a bug that only larger flowers hit.

Its smoke test (a small setosa) passes; real traffic, which has larger flowers too, gets 500s once it is
live, and the release's watch rolls it back.
"""

import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, content_type):
    rows = np.array(json.loads(request_body)["instances"], dtype=float)
    if (rows[:, 2] > 4.0).any():  # the bug: the new petal-length buckets stop at 4 cm
        raise ValueError(f"petal length {rows[:, 2].max():.1f} is outside the buckets")
    return rows
