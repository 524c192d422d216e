"""Lightning callbacks medcls adds to a training run (``conf/callbacks``, or a task's own)."""

from medcls.callbacks.finetune import HeadFirstFinetuning
from medcls.callbacks.time_budget import TimeBudget

__all__ = ["HeadFirstFinetuning", "TimeBudget"]
