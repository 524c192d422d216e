"""Lightning callbacks medcls adds to a training run (``conf/callbacks``, or a task's own)."""

from medcls.callbacks.finetune import HeadFirstFinetuning

__all__ = ["HeadFirstFinetuning"]
