"""Constants of the SageMaker XGBoost image."""
