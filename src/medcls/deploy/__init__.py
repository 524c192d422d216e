"""Models that leave medcls: export, MLflow Model, predictor."""
