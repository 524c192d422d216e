"""LightningModules: a model + a loss + metrics, one per method family."""

from medcls.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask"]
