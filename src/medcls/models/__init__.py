"""Networks only: backbones, heads, attention blocks. Nothing here knows about training."""

from medcls.models.classifier import Classifier, create_model

__all__ = ["Classifier", "create_model"]
