"""A training-and-serving script for the SageMaker XGBoost image, in the style of the public abalone example:
training under __main__ (never run when serving), model_fn for serving, the image's defaults for the rest."""

import argparse
import json
import logging
import os
import pickle as pkl

import pandas as pd  # noqa: F401  (the training half reads data with pandas)
import xgboost as xgb
from sagemaker_containers import entry_point
from sagemaker_xgboost_container import distributed
from sagemaker_xgboost_container.data_utils import get_dmatrix


def _xgb_train(params, dtrain, evals, num_boost_round, model_dir, is_master):
    booster = xgb.train(params=params, dtrain=dtrain, evals=evals, num_boost_round=num_boost_round)
    if is_master:
        model_location = model_dir + "/xgboost-model"
        pkl.dump(booster, open(model_location, "wb"))  # noqa: SIM115
        logging.info(f"Stored trained model at {model_location}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_depth", type=int)
    parser.add_argument("--eta", type=float)
    parser.add_argument("--num_round", type=int)
    parser.add_argument("--model_dir", type=str, default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", type=str, default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--sm_hosts", type=str, default=os.environ.get("SM_HOSTS"))
    parser.add_argument("--sm_current_host", type=str, default=os.environ.get("SM_CURRENT_HOST"))
    args, _ = parser.parse_known_args()
    sm_hosts = json.loads(args.sm_hosts)
    dtrain = get_dmatrix(args.train, "libsvm")
    train_args = dict(
        params={"max_depth": args.max_depth, "eta": args.eta},
        dtrain=dtrain,
        evals=[(dtrain, "train")],
        num_boost_round=args.num_round,
        model_dir=args.model_dir,
    )
    if len(sm_hosts) > 1:
        entry_point._wait_hostname_resolution()
        distributed.rabit_run(exec_fun=_xgb_train, args=train_args, hosts=sm_hosts, current_host=args.sm_current_host)
    else:
        _xgb_train(**train_args, is_master=True)


def model_fn(model_dir):
    """Deserialize and return fitted model."""
    model_file = "xgboost-model"
    booster = pkl.load(open(os.path.join(model_dir, model_file), "rb"))  # noqa: SIM115
    return booster
