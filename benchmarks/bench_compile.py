"""Benchmark: the shipped U-Nets' forward pass eager against ``torch.compile`` (inductor).

    python benchmarks/bench_compile.py                 # one CPU thread, batch 32 and 64
    python benchmarks/bench_compile.py --device cuda   # on a GPU (bf16 autocast + channels-last there)

For each shipped joint model it measures the compile time (the first compiled call, which traces and
builds the kernels) and the best of ``--repeats`` timed forward passes, eager and compiled, under
``torch.inference_mode`` (what the samplers run in). The sampler keeps whichever wins: the table
says by how much, and what one compilation costs against a sampling run. Writes
benchmarks/results/compile.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def best_seconds(fn, repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="32,64")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--domains", default="scenes,faces", help="each domain's prior network (its joint model)")
    ap.add_argument("--json", default="benchmarks/results/compile.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from conceptlang.io import write_json
    from conceptlang.models.registry import load_registry

    device = torch.device(args.device)
    registry = load_registry()
    rows = []
    print(f"torch {torch.__version__}, device {device}, {args.threads} thread(s), "
          f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("| domain | model | batch | eager ms | compiled ms | speed-up | compile s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for domain in args.domains.split(","):
        prior, null = registry.prior(domain)
        model = prior.impl(device)
        name = model.name
        net = model.net.eval()
        c, h, w = model.image_shape
        for batch in (int(b) for b in args.batches.split(",")):
            gen = torch.Generator().manual_seed(0)
            x = torch.randn((batch, c, h, w), generator=gen).to(device)
            sigma = torch.full((batch,), 0.5, device=device)
            cond = model.encode([null]).expand(batch, -1).to(device)
            with torch.inference_mode():
                net(x, sigma, cond)  # warm-up
                eager = best_seconds(lambda: net(x, sigma, cond), args.repeats, device)
                torch._dynamo.reset()
                compiled = torch.compile(net)
                t0 = time.perf_counter()
                compiled(x, sigma, cond)
                compile_s = time.perf_counter() - t0
                fast = best_seconds(lambda: compiled(x, sigma, cond), args.repeats, device)
            row = {"domain": domain, "model": name, "batch": batch, "eager_ms": round(eager * 1e3, 2), "compiled_ms": round(fast * 1e3, 2),
                   "speedup": round(eager / fast, 3), "compile_seconds": round(compile_s, 1)}
            rows.append(row)
            cells = [domain, name, batch, row["eager_ms"], row["compiled_ms"], f"{row['speedup']}×", row["compile_seconds"]]
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "threads": args.threads, "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
    write_json(Path(args.json), {"environment": env, "rows": rows})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
