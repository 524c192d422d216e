"""MLflow: parameters, tags and artifacts of a run; files written for it."""
