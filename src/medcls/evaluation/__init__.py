"""The evaluation report: a test's predictions become its metrics (with intervals, calibration
and operating points) and its files, in one place for medcls-train, medcls-eval and
medcls-ensemble (and so medcls-cv)."""

from medcls.evaluation.predictions import Predictions
from medcls.evaluation.report import Evaluation, evaluate
from medcls.evaluation.settings import EvalSettings

__all__ = ["EvalSettings", "Evaluation", "Predictions", "evaluate"]
