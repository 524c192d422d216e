"""Studies on top of single runs: ensembles, cross-validation, reports, paired comparisons.

They read checkpoints, prediction files and MLflow; they never reach into training internals.
"""
