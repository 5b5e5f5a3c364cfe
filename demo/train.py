"""Train the demo model: a scikit-learn LogisticRegression on the iris data set, saved as model.joblib.

    python demo/train.py OUT_DIR

OUT_DIR then holds exactly what dropship releases: the inference container's default handler loads
``model.joblib`` and answers ``{"instances": [[...4 floats...]]}`` with ``{"predictions": [...]}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(features, labels)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "model.joblib"
    joblib.dump(model, path)
    sample = [[5.1, 3.5, 1.4, 0.2]]
    print(f"Trained on {len(labels)} flowers (accuracy {model.score(features, labels):.2f}); saved {path}")
    print(f"Prediction for {sample}: {model.predict(sample).tolist()} (0 = setosa)")


if __name__ == "__main__":
    main()
