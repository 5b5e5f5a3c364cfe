"""dropship's stand-in for the inference helpers of the SageMaker XGBoost image (sagemaker-xgboost-container):
`encoder` (request bodies to DMatrix), `constants.xgb_content_types`, and, so that training-and-serving
scripts load, `data_utils` and `distributed`, whose training functions are not available here.
"""
