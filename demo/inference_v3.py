"""Version 3 of the demo model: a new petal-length scaling with a bug that only larger flowers hit.

Its smoke test (a small setosa) passes; real traffic, which has larger flowers too, gets 500s once it is
live, and the release's watch rolls it back.
"""

import json
import os

import joblib
import numpy as np

# One scale per whole centimetre of petal length (all 1.0 for now). The bug: the table stops at 4 cm,
# so a petal of 4 cm or more raises IndexError in predict_fn, which SageMaker answers with a 5xx.
PETAL_LENGTH_SCALE = [1.0, 1.0, 1.0, 1.0]


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, content_type):
    return np.array(json.loads(request_body)["instances"], dtype=float)


def predict_fn(input_data, model):
    rows = input_data.copy()
    for row in rows:
        row[2] *= PETAL_LENGTH_SCALE[int(row[2])]
    return model.predict(rows)


def output_fn(prediction, accept):
    # The same response shape as version 1 (the container's default), so its clients keep working.
    return json.dumps({"predictions": prediction.tolist()}), "application/json"
