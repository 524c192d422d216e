"""What the Non-local blocks of the attention EfficientNetV2 cost: weights, MACs and peak
training memory next to the plain network.

    python benchmarks/attention_memory.py [--model tf_efficientnetv2_s] [--size 224]
        [--batch-size 8] [--reductions 8 2] [--stages all] [--classes 8]

For the plain network and the attention network at each ``--reductions`` value (the Non-local
embedding is C/r of the expanded MBConv width C; 8 is conf/model/attention_effnetv2.yaml's):

  weights   parameters of the whole classifier (backbone + an 8-class linear head)
  GMACs     multiply-accumulates of one forward pass of one image, as torch.utils.flop_counter
            counts them (convolutions, matmuls; FLOPs / 2). On CPU the counter sees the
            attention products too (θᵀφ and the weighted sum of g, 2·N·M·C' per block: the
            math path of scaled_dot_product_attention runs them as aten.bmm), so nothing is
            added by hand. Each Non-local block's counted MACs are checked against the
            analytic 4·N·C·C' (θ, φ, g, W_z) + 2·N·M·C': a fused kernel the counter cannot
            see (other devices or torch builds) stops the script instead of under-counting.
  peak MiB  peak resident memory (ru_maxrss) of the process that imports torch/timm, builds
            the model and AdamW, then runs one fp32 training step (forward, backward,
            optimiser) on a batch of random images: interpreter, libraries and weights
            included, so it depends on the build and is not the cost of the step. "step MiB",
            that peak minus the resident memory just before the step (activations, gradients,
            AdamW state), is the figure to compare. Each configuration runs in its own process,
            so one's allocations cannot hide in another's peak.
  step s    wall time of a second training step (machine load printed; indicative only)

Pretrained weights are not needed (and not fetched): the structure alone sets these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import load_average, machine_lines, table  # noqa: E402


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(
    model: str, size: int, batch: int, reduction: int | None, stages: str, classes: int
) -> dict:
    """One configuration, in this process (called in a fresh child process)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from medcls.models import NonLocalBlock, create_model

    torch.manual_seed(0)
    kwargs = {} if reduction is None else {"nonlocal_stages": stages}
    if reduction is not None:
        kwargs["nonlocal_reduction"] = reduction
    net = create_model(model, num_classes=classes, image_size=size, **kwargs)
    weights = sum(p.numel() for p in net.parameters())

    blocks = {name: m for name, m in net.named_modules() if isinstance(m, NonLocalBlock)}
    expected: dict[str, int] = {}  # analytic MACs of each Non-local block, batch 1

    def analytic(name: str):
        def hook(block: NonLocalBlock, inputs, output) -> None:
            _, c, h, w = inputs[0].shape
            n, inter = h * w, block.inter_channels
            keys = block.pool(torch.empty(1, 1, h, w)).numel()
            expected[name] = 4 * n * c * inter + 2 * n * keys * inter

        return hook

    hooks = [m.register_forward_hook(analytic(name)) for name, m in blocks.items()]
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    macs = counter.get_total_flops() / 2
    # The counter's per-module totals are keyed "<RootClass>.<module path>".
    per_module = counter.get_flop_counts()
    for name, want in expected.items():
        got = sum(per_module.get(f"{type(net).__name__}.{name}", {}).values()) / 2
        if got != want:
            raise RuntimeError(
                f"{name}: the flop counter saw {got:.0f} MACs, the block computes {want} "
                "(convolutions + attention): this torch build hides the attention kernel from "
                "the counter, or names modules differently"
            )

    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, classes, (batch,))
    before = _rss_mib()

    def step() -> float:
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    seconds = step()
    return {
        "weights": weights,
        "gmacs": macs / 1e9,
        "peak_mib": peak,
        "step_mib": peak - before,
        "step_s": seconds,
        "nonlocal_blocks": len(blocks),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tf_efficientnetv2_s")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reductions", type=int, nargs="+", default=[8, 2])
    ap.add_argument("--stages", default="all")
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child is not None:  # one measurement, reported as JSON to the parent
        reduction = None if args.child == "plain" else int(args.child)
        result = measure(
            args.model, args.size, args.batch_size, reduction, args.stages, args.classes
        )
        print(json.dumps(result))
        return

    print("\n".join(machine_lines()))
    print(
        f"model {args.model}, {args.size} px, batch {args.batch_size} (fp32 training step), "
        f"Non-local stages: {args.stages}\n"
    )
    rows, plain = [], None
    for variant in ["plain", *map(str, args.reductions)]:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", variant]
        cmd += ["--model", args.model, "--size", str(args.size)]
        cmd += ["--batch-size", str(args.batch_size), "--stages", args.stages]
        cmd += ["--classes", str(args.classes)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        plain = plain or r
        label = "plain" if variant == "plain" else f"+ Non-local, C/{variant}"
        rows.append(
            [
                label,
                r["nonlocal_blocks"],
                f"{r['weights'] / 1e6:.1f} M",
                f"{r['weights'] / plain['weights']:.2f}x",
                f"{r['gmacs']:.2f}",
                f"{r['gmacs'] / plain['gmacs']:.2f}x",
                f"{r['peak_mib']:.0f}",
                f"{r['step_mib']:.0f}",
                f"{r['step_s']:.2f}",
            ]
        )
    header = ["network", "blocks", "weights", "vs plain", "GMACs", "vs plain", "peak MiB"]
    header += ["step MiB", "step s"]
    print(table(header, rows))
    print(f"\nload average (1/5/15 min) at end: {load_average()}")


if __name__ == "__main__":
    main()
