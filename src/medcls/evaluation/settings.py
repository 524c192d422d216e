"""What the evaluation report computes (the ``eval`` config node, conf/eval/default.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from medcls.errors import DataError
from medcls.evaluation.calibration import parse_threshold_rule
from medcls.evaluation.logit_adjustment import parse_logit_adjustment
from medcls.tasks.tta import tta_views


@dataclass(frozen=True)
class EvalSettings:
    """Attributes:
    n_boot: bootstrap draws for the intervals (0: no intervals).
    level: the intervals' coverage (0.95).
    seed: the bootstrap's random seed (the same draws for every metric).
    calibration_bins: equal-width confidence bins of the ECE and the reliability diagram.
    specificities: binary: the sensitivity at each of these specificities.
    pauc_min_specificity: binary: the partial AUC over specificities from this one to 1.
    curves: write ROC, precision–recall and reliability CSV + PNG files.
    subgroups: record attributes to report per subgroup (``sex``, ``age_group``, ...).
    age_bins: the edges of ``age_group`` (``(30, 45, 60, 75)``: <30, 30–45, …, ≥75).
    subgroup_min_images: subgroups smaller than this are listed but not in the largest gap.
    calibrate: ``temperature``: fit a softmax temperature on validation (medcls-train),
        report the test's calibration before and after it, store it in the checkpoint.
    threshold: binary: the decision threshold's rule, applied on validation and kept for
        test (``youden``, ``sensitivity@0.95``, ``specificity@0.95``, a number; ``argmax``).
    group_threshold: binary: the rule for a patient's / lesion's decision, chosen on the
        validation groups' mean probabilities (``argmax``: none; the image threshold is never
        carried over to groups).
    logit_adjustment: post-hoc logit adjustment by the training prior (Menon et al. 2021):
        ``tuned`` (τ chosen on validation; 1 without validation images), ``none``, or τ.
    tta: test-time augmentation views averaged with the original (``hflip``, …). medcls-train
        fits its post-hoc choices and tests with them and stores them in the checkpoint;
        ``None`` there means none, and for medcls-eval / -ensemble the checkpoint's own.
    """

    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    calibration_bins: int = 15
    specificities: tuple[float, ...] = (0.90, 0.95)
    pauc_min_specificity: float | None = 0.90
    curves: bool = True
    subgroups: tuple[str, ...] = ()
    age_bins: tuple[float, ...] = (30, 45, 60, 75)
    subgroup_min_images: int = 10
    calibrate: str = "none"
    threshold: str = "argmax"
    group_threshold: str = "argmax"
    logit_adjustment: str = "none"
    tta: tuple[str, ...] | None = None

    @property
    def views(self) -> tuple[str, ...]:
        """The test-time views of a training run (none when unset)."""
        return tuple(self.tta or ())

    @property
    def fits_on_validation(self) -> bool:
        """Whether training must fit something on the validation images."""
        return (
            self.calibrate != "none"
            or self.threshold != "argmax"
            or self.group_threshold != "argmax"
        )

    @classmethod
    def from_cfg(cls, node: Mapping | None) -> EvalSettings:
        """From the ``eval`` config node (missing keys keep their defaults)."""
        node = dict(node or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(node) - known)
        if unknown:
            raise DataError(
                f"eval.{unknown[0]} is not an evaluation setting; known: {sorted(known)}"
            )
        pairs = (("specificities", float), ("subgroups", str), ("age_bins", float), ("tta", str))
        for key, kind in pairs:
            if key in node and (key != "tta" or node[key] is not None):
                node[key] = tuple(kind(v) for v in node[key] or ())
        for key in ("threshold", "group_threshold", "logit_adjustment"):
            if key in node:
                node[key] = str(node[key])
        settings = cls(**node)
        if settings.calibrate not in ("none", "temperature"):
            raise DataError(f"eval.calibrate={settings.calibrate!r}: use none or temperature")
        parse_threshold_rule(settings.threshold)  # a bad rule stops the run here
        parse_threshold_rule(settings.group_threshold)
        parse_logit_adjustment(settings.logit_adjustment)
        tta_views(settings.views)
        for s in (*settings.specificities, settings.pauc_min_specificity or 0.5):
            if not 0 < s < 1:
                raise DataError(f"eval: specificity {s} must lie strictly between 0 and 1")
        if not settings.age_bins:
            raise DataError("eval.age_bins is empty: give the age_group edges, e.g. [30,45,60,75]")
        if not 0 < settings.level < 1:
            raise DataError(f"eval.level={settings.level}: an interval's coverage, e.g. 0.95")
        return settings
