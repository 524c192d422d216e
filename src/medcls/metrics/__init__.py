"""Metric collections for classification."""

from medcls.metrics.classification import ClassificationMetrics

__all__ = ["ClassificationMetrics"]
