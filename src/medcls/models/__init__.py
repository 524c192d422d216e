"""Networks only: backbones, heads, attention blocks. Nothing here knows about training."""

from medcls.models.attention_effnetv2 import add_nonlocal
from medcls.models.backbone import create_backbone
from medcls.models.classifier import Classifier, create_model
from medcls.models.non_local import NonLocalBlock

__all__ = ["Classifier", "NonLocalBlock", "add_nonlocal", "create_backbone", "create_model"]
