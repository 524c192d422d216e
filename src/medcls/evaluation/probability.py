"""The model's probability, in numpy: what validation fitting computes from stored logits.

One definition everywhere (``ClassificationTask.log_proba`` is the same in torch): for the
network's logits ``z_v`` on each test-time view ``v`` of an image and the logit bias ``b``
(``-τ · log prior``, zero without a logit adjustment),

    p = mean_v softmax(z_v + b),    and, with a fitted temperature T,    softmax(log p / T).

For one view ``log p`` is the logits less a per-row constant, so the temperature divides the
logits exactly (as an export does). ``log p`` is computed with ``logsumexp`` in float64, never
as ``log(clip(p))``, so a confident model's small probabilities are not flattened.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, logsumexp


def as_views(logits: np.ndarray) -> np.ndarray:
    """``(N, K)`` logits of one view → ``(N, 1, K)``; ``(N, V, K)`` as it is (float64)."""
    z = np.asarray(logits, np.float64)
    return z[:, None, :] if z.ndim == 2 else z


def view_log_probs(view_logits: np.ndarray, bias: np.ndarray | float = 0.0) -> np.ndarray:
    """``log p (N, K)``: the log of the mean over views of ``softmax(z_v + bias)``.
    ``view_logits (N, V, K)`` (or ``(N, K)``), ``bias (K,)`` (or ``(N, K)``: one per image, e.g.
    each fold's own prior when folds are pooled)."""
    b = np.asarray(bias, np.float64)
    z = as_views(view_logits) + (b[:, None, :] if b.ndim == 2 else b)  # (N, K): a bias per row
    return logsumexp(log_softmax(z, axis=2), axis=1) - np.log(z.shape[1])


def view_probs(view_logits: np.ndarray, bias: np.ndarray | float = 0.0) -> np.ndarray:
    """``p (N, K)`` of :func:`view_log_probs` (rows sum to 1)."""
    return np.exp(view_log_probs(view_logits, bias))


def safe_log(probs: np.ndarray) -> np.ndarray:
    """``log p`` of float64 probabilities; only an exact 0 (not representable) is floored at the
    smallest positive float64, far below any probability a float32 log-softmax gives."""
    return np.log(np.maximum(np.asarray(probs, np.float64), np.finfo(np.float64).tiny))
