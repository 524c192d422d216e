"""Loss modules and the factory that builds them from ``conf/loss``."""

from medcls.losses.class_weights import class_weights
from medcls.losses.factory import create_loss
from medcls.losses.focal import FocalLoss

__all__ = ["FocalLoss", "class_weights", "create_loss"]
