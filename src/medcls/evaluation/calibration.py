"""What is fitted on validation and applied, unchanged, to test and to new images: a softmax
temperature (``eval.calibrate=temperature``) and, for two classes, a decision threshold
(``eval.threshold=youden|sensitivity@0.95|specificity@0.95|<number>``).

Both are stored in the checkpoint (``medcls.calibration``), so medcls-eval and medcls-predict
apply what training chose instead of choosing again on the images they score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_curve

from medcls.errors import DataError
from medcls.evaluation.probability import safe_log

THRESHOLD_RULES = ("argmax", "youden", "sensitivity@<x>", "specificity@<x>", "<number>")


@dataclass(frozen=True)
class Calibration:
    """``temperature``: divides the logits (``None``: none fitted). ``threshold``: binary:
    the positive class is predicted where its (calibrated) probability reaches it; ``rule``:
    how it was chosen."""

    temperature: float | None = None
    threshold: float | None = None
    rule: str = "argmax"
    # a patient's / lesion's decision: chosen on validation group means (eval.group_threshold),
    # never the image threshold carried over; None: the argmax of the group's mean probability
    group_threshold: float | None = None
    group_rule: str = "argmax"

    def to_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict | None) -> Calibration:
        return cls(**meta) if meta else cls()

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """``probs (N, K)`` with the temperature applied (unchanged without one)."""
        return apply_temperature(probs, self.temperature) if self.temperature else probs

    def predict(self, probs: np.ndarray, positive: int) -> np.ndarray:
        """``(N,)`` predicted classes of calibrated ``probs``: the threshold's for two classes,
        else the argmax."""
        return _decide(probs, positive, self.threshold)

    def predict_groups(self, mean_probs: np.ndarray, positive: int) -> np.ndarray:
        """``(G,)`` predicted classes of groups' mean calibrated probabilities ``(G, K)``: the
        group threshold's for two classes, else the argmax."""
        return _decide(mean_probs, positive, self.group_threshold)

    def for_groups(self) -> Calibration:
        """What applies to group means, which are already means of calibrated probabilities:
        no temperature, the group threshold as the threshold."""
        return Calibration(None, self.group_threshold, self.group_rule)


def _decide(probs: np.ndarray, positive: int, threshold: float | None) -> np.ndarray:
    if threshold is None or probs.shape[1] != 2:
        return probs.argmax(1)
    return np.where(probs[:, positive] >= threshold, positive, 1 - positive)


def calibration_note(cal: Calibration) -> str:
    """``temperature 1.83 · threshold 0.27 (youden)``, for the printed summaries."""
    parts = []
    if cal.temperature is not None:
        parts.append(f"temperature {cal.temperature:.3f}")
    if cal.threshold is not None:
        parts.append(f"threshold {cal.threshold:.4f}" + (f" ({cal.rule})" if cal.rule else ""))
    if cal.group_threshold is not None:
        parts.append(f"group threshold {cal.group_threshold:.4f} ({cal.group_rule})")
    return " · ".join(parts) or "none"


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` of the model's probability ``(N, K)`` (float64, as medcls's
    inference returns it): for one view exactly ``softmax((logits + bias) / T)``, the export's
    formula; with test-time views T divides the log of their mean
    (:mod:`medcls.evaluation.probability`). No clipping at 1e-12: a confident model's small
    probabilities keep their size."""
    z = safe_log(probs) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``labels (N,)`` under
    ``probs (N, K)`` (Guo et al. 2017), searched over log T in [1/20, 20]."""
    labels = np.asarray(labels)

    def nll(log_t: float) -> float:
        p = apply_temperature(probs, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None))))

    res = minimize_scalar(nll, bounds=(-np.log(20), np.log(20)), method="bounded")
    return float(np.exp(res.x))


def parse_threshold_rule(rule) -> tuple[str, float | None]:
    """``"youden"`` → (youden, None); ``"sensitivity@0.95"`` → (sensitivity, 0.95); ``0.3`` →
    (fixed, 0.3); ``"argmax"`` → (argmax, None)."""
    text = str(rule).strip()
    if text in ("argmax", "youden"):
        return text, None
    kind, _, value = text.partition("@")
    try:
        number = float(value if value else kind)
    except ValueError:
        number = None
    if value and kind in ("sensitivity", "specificity") and number is not None and 0 < number < 1:
        return kind, number
    if not value and number is not None and 0 < number < 1:
        return "fixed", number
    raise DataError(
        f"eval.threshold={text!r}: use one of {', '.join(THRESHOLD_RULES)} (e.g. "
        "sensitivity@0.95, the AIROGS screening point, or 0.3), with x and the number in (0, 1)."
    )


def choose_threshold(score: np.ndarray, positive: np.ndarray, rule) -> float | None:
    """The threshold ``rule`` picks on validation scores ``(N,)`` of the positive class.

    youden: maximises sensitivity + specificity − 1; sensitivity@x: the highest threshold
    reaching sensitivity x (the most specific such); specificity@x: the lowest reaching
    specificity x (the most sensitive such). ``None`` for argmax.
    """
    kind, x = parse_threshold_rule(rule)
    if kind == "argmax":
        return None
    if kind == "fixed":
        return x
    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        raise DataError(
            f"eval.threshold={rule}: the validation images are all of one class; a threshold "
            "needs both. Use eval.threshold=argmax or a number."
        )
    fpr, tpr, thr = roc_curve(positive, score, drop_intermediate=False)
    fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]  # the first threshold (inf) predicts nothing
    if kind == "youden":
        return float(thr[np.argmax(tpr - fpr)])
    if kind == "sensitivity":
        return float(thr[np.flatnonzero(tpr >= x - 1e-12)[0]])
    ok = np.flatnonzero(1 - fpr >= x - 1e-12)
    return float(thr[ok[-1]]) if len(ok) else float(thr[0])


def fit_calibration(
    probs: np.ndarray, labels: np.ndarray, positive: int, calibrate: str, rule
) -> Calibration:
    """Fit on validation ``probs (N, K)``, ``labels (N,)``: the temperature first
    (``calibrate="temperature"``), then the threshold on the calibrated probabilities."""
    temperature = fit_temperature(probs, labels) if calibrate == "temperature" else None
    cal = Calibration(temperature=temperature)
    threshold = None
    if probs.shape[1] == 2:
        threshold = choose_threshold(cal.apply(probs)[:, positive], labels == positive, rule)
    return Calibration(temperature, threshold, str(rule) if threshold is not None else "argmax")
