"""Pick numeric precision and memory format for the machine at hand."""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger(__name__)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU executes bf16 natively (AVX512-BF16 or AMX).

    oneDNN *emulates* bf16 on other AVX-512 CPUs, which is slower than fp32, so the mere
    availability of bf16 kernels is not enough.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and torch.backends.mkldnn.is_available()


def resolve_precision(precision: str | int, accelerator: str) -> str:
    """``auto`` → ``bf16-mixed`` on fast-bf16 CPUs and bf16 GPUs, ``16-mixed`` on older GPUs,
    else ``32-true``; anything else is passed through."""
    if str(precision) != "auto":
        return str(precision)
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("cpu", "auto") and cpu_has_fast_bf16():
        return "bf16-mixed"
    return "32-true"


def resolve_channels_last(setting: str | bool, precision: str) -> bool:
    """``auto``: channels_last with reduced precision (oneDNN / tensor cores prefer NHWC)."""
    if isinstance(setting, bool):
        return setting
    if str(setting) != "auto":
        return str(setting).lower() in ("true", "1", "yes")
    return precision.startswith(("bf16", "16"))
