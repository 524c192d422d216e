"""Pick numeric precision and memory format for the machine at hand."""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import platform
import time

import torch

log = logging.getLogger(__name__)


@functools.cache
def _cpuinfo() -> str:
    """``/proc/cpuinfo`` (read once; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU executes bf16 natively (AVX512-BF16 or AMX).

    oneDNN *emulates* bf16 on other AVX-512 CPUs, which is slower than fp32, so the mere
    availability of bf16 kernels is not enough.
    """
    flags = _cpuinfo()
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


# -- the measured choice ------------------------------------------------------------------------
# Which memory format (and, on CPUs with native bf16, which precision) trains a network fastest
# depends on the network and the CPU: channels_last made tf_efficientnet_lite0 1.77× faster in
# fp32 on an AVX2-only CPU, where the rule above kept it NCHW. Under `auto`, a run long enough
# to care times one training step of each candidate once per machine × network × input, and
# keeps the answer in the cache folder.
SPEED_CACHE = "speed_choices.json"


def speed_candidates(precision: str, channels_last: str | bool) -> list[tuple[str, bool]]:
    """The ``(precision, channels_last)`` pairs a CPU run may take: a fixed setting stays fixed;
    ``auto`` precision tries fp32 and (native bf16 only) bf16-mixed; ``auto`` format tries
    NCHW and channels_last."""
    if str(precision) == "auto":
        precisions = ["32-true"] + (["bf16-mixed"] if cpu_has_fast_bf16() else [])
    else:
        precisions = [str(precision)]
    return [
        (p, cl)
        for p in precisions
        for cl in ((False, True) if str(channels_last) == "auto" else (bool(channels_last),))
    ]


def step_seconds(
    model: torch.nn.Module, image_size: int, batch: int, precision: str, channels_last: bool
) -> float:
    """Seconds of one training step (forward, backward, SGD update) of a copy of ``model`` on
    a random ``(batch, 3, S, S)`` batch: the better of two steps after one warm-up."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = copy.deepcopy(model).train().to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=1e-6)
    x = torch.randn(batch, 3, image_size, image_size).contiguous(memory_format=fmt)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            out = net(x)
        loss = (out[0] if isinstance(out, (tuple, list)) else out).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def _label(candidate: tuple[str, bool]) -> str:
    return f"{candidate[0]}/{'NHWC' if candidate[1] else 'NCHW'}"


def fastest_settings(
    model: torch.nn.Module,
    image_size: int,
    batch: int,
    candidates: list[tuple[str, bool]],
    cache_file: str | None,
    key: str,
) -> tuple[str, bool]:
    """The fastest of ``candidates`` for ``model`` at this input, measured once per ``key``
    (network, input, machine, torch) and remembered in ``cache_file`` (``None``: not kept)."""
    if len(candidates) == 1:
        return candidates[0]
    known = _read_choices(cache_file)
    seen = known.get(key)
    if seen and (seen["precision"], seen["channels_last"]) in candidates:
        return seen["precision"], bool(seen["channels_last"])
    timed = {c: step_seconds(model, image_size, batch, *c) for c in candidates}
    best = min(timed, key=timed.get)
    seconds = {_label(c): s for c, s in timed.items()}
    log.info(
        "fastest training step here: %s (%s)",
        _label(best),
        ", ".join(f"{name} {s * 1000:.0f} ms" for name, s in seconds.items()),
    )
    if cache_file:
        known[key] = {"precision": best[0], "channels_last": best[1], "seconds": seconds}
        _write_choices(cache_file, known)
    return best


def _read_choices(cache_file: str | None) -> dict:
    """The remembered choices (``{}``: none, or an unreadable file, which is then rewritten)."""
    if not cache_file or not os.path.isfile(cache_file):
        return {}
    try:
        with open(cache_file, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_choices(cache_file: str, known: dict) -> None:
    """Write ``known`` whole, atomically (parallel jobs may share the cache folder)."""
    os.makedirs(os.path.dirname(cache_file) or ".", exist_ok=True)
    tmp = f"{cache_file}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(known, f, indent=1, sort_keys=True)
    os.replace(tmp, cache_file)


def machine_key() -> str:
    """The CPU model, thread and core counts and torch version: what a speed choice depends on
    besides the network and its input."""
    names = [
        ln.split(":", 1)[1].strip() for ln in _cpuinfo().splitlines() if ln.startswith("model name")
    ]
    model = names[0] if names else (platform.processor() or platform.machine())
    return (
        f"{model}|{torch.get_num_threads()} threads|{os.cpu_count()} cpus|torch {torch.__version__}"
    )
