"""Peak memory of the decode cache: flat on disk, growing with the dataset in memory.

    python benchmarks/cache_memory.py [--sizes 2000 8000] [--image-size 256] [--work-dir DIR]

Each row is its own process (so one's allocations cannot hide in another's peak) that builds
the generated dataset's records (``data=synthetic`` rendered at ``--image-size``), then decodes
them with ``medcls.data.cache.decode_all``:

  disk     the default ``data.cache=disk``: decoded straight into memory-mapped files, one
           window of ``CHUNK_BYTES`` at a time, then renamed into place
  memory   ``data.cache=memory`` (negative control: the arrays live in RAM, N × S² × 3 bytes)

``decode MiB`` is the process's peak resident memory during the decode (VmHWM, reset just
before it through ``/proc/self/clear_refs``; Linux) minus its resident memory before it
(interpreter, libraries and the records), i.e. what decoding added. The script ends
by checking the disk rows: the largest may exceed the smallest by no more than one window plus
the decoder's in-flight images (``CHUNK_BYTES`` + 256 images), the claim in docs/datasets.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MIB = 1 << 20


def status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Linux: start the peak resident memory (VmHWM) again from the current one, so the
    import-time peak of torch & co. cannot hide what decoding adds."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(n: int, mode: str, size: int, cache_dir: str) -> None:
    from omegaconf import OmegaConf

    from medcls.data.cache import decode_all
    from medcls.data.preprocess import Preprocess
    from medcls.data.sources.synthetic import load_synthetic

    cfg = OmegaConf.create(
        {
            "name": f"mem{n}",
            "num_samples": n,
            "num_classes": 5,
            "generator_seed": 0,
            "images_per_group": 2,
            "native_size": size,
        }  # fmt: skip
    )
    records = load_synthetic(cfg).records
    reset_peak()
    before = status_mib("VmRSS")
    t = time.perf_counter()
    d = decode_all(
        f"mem{n}", records, Preprocess(image_size=size), cache=mode, cache_dir=cache_dir,
        progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t
    assert d.images.shape == (n, size, size, 3) and d.ok.all()
    print(json.dumps({"before": before, "after": status_mib("VmHWM"), "seconds": seconds}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--modes", nargs="+", default=["disk", "memory"])
    ap.add_argument("--work-dir", default=None, help="disk caches go here (default: a temp dir)")
    ap.add_argument("--child", nargs=3, metavar=("N", "MODE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.image_size, args.child[2])
        return

    from _common import machine_lines, table

    from medcls.data.cache import CHUNK_BYTES

    work = args.work_dir or tempfile.mkdtemp(prefix="medcls-cache-memory-")
    print("\n".join(machine_lines()))
    rows, disk = [], {}
    for mode in args.modes:
        for n in args.sizes:
            cache_dir = os.path.join(work, f"{mode}-{n}")
            cmd = [sys.executable, __file__, "--image-size", str(args.image_size)]
            out = subprocess.run(
                [*cmd, "--child", str(n), mode, cache_dir],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            added = r["after"] - r["before"]
            data_mib = n * args.image_size**2 * 3 / MIB
            if mode == "disk":
                disk[n] = added
            rows.append(
                [
                    mode,
                    n,
                    f"{data_mib:.0f}",
                    f"{r['before']:.0f}",
                    f"{r['after']:.0f}",
                    f"{added:.0f}",
                    f"{r['seconds']:.0f}",
                ]  # fmt: skip
            )
            shutil.rmtree(cache_dir, ignore_errors=True)
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    header = ["cache", "images", "data MiB", "RSS before MiB", "peak MiB", "decode MiB", "s"]
    print(f"\ndecode cache at {args.image_size} px (generated images)\n")
    print(table(header, rows, left=(0,)))
    if len(disk) >= 2:
        bound = (CHUNK_BYTES + 256 * args.image_size**2 * 3) / MIB
        growth = disk[max(disk)] - disk[min(disk)]
        verdict = "flat" if growth <= bound else "NOT flat"
        print(
            f"\ndisk cache: {max(disk)} images added {growth:.0f} MiB over {min(disk)} images "
            f"(bound: one {CHUNK_BYTES / MIB:.0f} MiB window + 256 images in flight = "
            f"{bound:.0f} MiB): {verdict}"
        )
        if growth > bound:
            sys.exit(1)


if __name__ == "__main__":
    main()
