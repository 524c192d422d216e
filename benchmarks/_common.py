"""Helpers the benchmark scripts share: machine facts, quiet libraries, plain tables."""

from __future__ import annotations

import datetime
import logging
import os
import platform
import warnings
from collections.abc import Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def quiet_libraries() -> None:
    """Keep Lightning's banners, the seed message and library warnings out of the tables.

    Call after importing pytorch_lightning (its import sets its loggers to INFO)."""
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning_fabric", "lightning", "medcls"):
        logging.getLogger(name).setLevel(logging.ERROR)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_lines() -> list[str]:
    import pytorch_lightning as pl
    import timm
    import torch

    return [
        f"date:    {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        f"python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
        f"pytorch_lightning {pl.__version__}",
        f"load average (1/5/15 min) at start: {load_average()}",
    ]


def table(
    header: Sequence[str], rows: Sequence[Sequence[object]], left: Sequence[int] = (0,)
) -> str:
    """A plain fixed-width table; columns in ``left`` left-aligned, the others right-aligned."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


class CpuClock:
    """Wall clock plus how much CPU *other* processes used, from ``/proc/stat``.

    ``stamp()`` returns ``(wall s, machine busy CPU s, this process's CPU s)``; between two
    stamps, ``others(a, b)`` is the average number of cores other processes (and the hypervisor's
    steal) kept busy. On a 2-core machine a co-tenant on one core slows a 2-thread PyTorch loop
    several-fold (OpenMP barriers wait for the descheduled thread), so timings are only
    comparable when this is near 0.
    """

    def __init__(self) -> None:
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = os.path.isfile("/proc/stat")

    def stamp(self) -> tuple[float, float, float]:
        import time

        busy = 0.0
        if self.available:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
            busy = (sum(v) - v[3] - v[4]) / self.hz  # all but idle and iowait (steal included)
        t = os.times()  # children: finished subprocesses (e.g. a medcls-train run) count as ours
        return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system

    @staticmethod
    def others(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
        wall = b[0] - a[0]
        if wall <= 0:
            return 0.0
        return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / wall)

    def wait_for_quiet(self, max_wait: float, threshold: float = 0.2, window: float = 1.0) -> float:
        """Sleep until other processes use < ``threshold`` cores over ``window`` s, at most
        ``max_wait`` s; return the seconds waited."""
        import time

        if not self.available or max_wait <= 0:
            return 0.0
        start = time.perf_counter()
        while True:
            a = self.stamp()
            time.sleep(window)
            if self.others(a, self.stamp()) < threshold:
                return time.perf_counter() - start - window
            if time.perf_counter() - start >= max_wait:
                return time.perf_counter() - start
