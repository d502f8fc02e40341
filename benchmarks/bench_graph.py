"""Batched energy graph vs a naive per-leaf loop, and sampler throughput.

    python benchmarks/bench_graph.py            # CPU, and CUDA when present
    python benchmarks/bench_graph.py --quick    # fewer repeats

For expressions of 1–8 leaves that all use ONE model (a small FiLM-conditioned conv energy net on
32×32 RGB, the size of the shipped models), it times

* ``graph.energy(x)``: one batched forward pass with the leaves' conditions stacked, against a naive
  loop that calls the model once per leaf and sums;
* ``graph.score(x)`` (what the samplers call every step): one batched forward+backward, against
  the per-leaf loop;

then the samplers' throughput (images/s) on that net and on the analytic Gaussians. Prints a table
and writes ``benchmarks/results/graph.json``. Target: batched never slower than the loop on CPU,
and ≥ 2× faster on GPU for 4+ leaves.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conceptlang.compiler import compile  # noqa: E402
from conceptlang.data.domain import Domain, Family  # noqa: E402
from conceptlang.interface import ConceptRef  # noqa: E402
from conceptlang.io import write_json  # noqa: E402
from conceptlang.models.analytic import GaussianRegistry  # noqa: E402
from conceptlang.sampling import sample  # noqa: E402

VALUES = ("a", "b", "c", "d", "e", "f", "g", "h")
DOMAIN = Domain("bench", 32, 3, (Family("tag", "discrete", values=VALUES, exclusive=False),))


class FiLMEnergyNet(nn.Module):
    """A conv energy E(x | c): 4 conv layers (48→96 channels), FiLM from the condition, scalar head."""

    def __init__(self, n_values: int = len(VALUES) + 1, width: int = 48):
        super().__init__()
        chans = [3, width, width, 2 * width, 2 * width]
        self.embed = nn.Embedding(n_values, 2 * sum(chans[1:]))  # a scale and a shift per channel
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, stride=1 if i % 2 == 0 else 2, padding=1)
                                   for i in range(4))
        self.widths = chans[1:]
        self.head = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        film = self.embed(cond.long().view(-1))  # (N, Σ 2·width)
        h = x
        off = 0
        for conv, w in zip(self.convs, self.widths):
            h = conv(h)
            scale, shift = film[:, off:off + w], film[:, off + w:off + 2 * w]
            off += 2 * w
            h = torch.nn.functional.silu(h * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
        return self.head(h.mean((2, 3))).squeeze(1)  # (N,)


class BenchModel:
    name = "bench-energy"
    domain = "bench"
    kind = "explicit"
    noise_conditional = False
    image_shape = (3, 32, 32)

    def __init__(self, device: torch.device):
        torch.manual_seed(0)
        self.net = FiLMEnergyNet().to(device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def encode(self, conditions) -> torch.Tensor:
        return torch.tensor([[0 if not c else 1 + VALUES.index(c["tag"])] for c in conditions], dtype=torch.float32)

    def energy(self, x, cond, sigma):
        return self.net(x, cond.to(x.device))

    def score(self, x, cond, sigma):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.net(xg, cond.to(x.device)).sum(), xg)
        return -g

    def to(self, device):
        self.net.to(device)
        return self


class BenchRegistry:
    def __init__(self, device: torch.device):
        self.model = BenchModel(device)

    def candidates(self, name, family=None):
        return [ConceptRef("bench", "tag", name)] if name in VALUES and family in (None, "tag") else []

    def known_names(self):
        return list(VALUES)

    def model_for(self, ref):
        return self.model, {"tag": ref.value}

    def prior(self, domain):
        return self.model, {}

    def domain(self, name):
        return DOMAIN

    def sampler_settings(self, models):
        return {"sampler": "langevin", "step_size": 0.01, "steps": 20}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up (cuDNN autotune, allocator)
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_pair(fa, fb, device: torch.device, repeats: int) -> dict[str, float]:
    """Median wall and CPU times of fa and fb, and the medians of their per-repeat ratios b/a.

    The two are interleaved (a, b, b, a, …) so both see the same background load; on the CPU the
    process CPU time (one torch thread) is also recorded, because on a shared, overloaded machine
    the wall time mostly measures waiting for a core, not the work done."""
    fa(), fb()
    _sync(device)
    t: dict[str, list[float]] = {"a": [], "b": [], "ca": [], "cb": [], "r": [], "cr": []}
    for r in range(repeats):
        wall, cpu = {}, {}
        for which, fn in ((("a", fa), ("b", fb)) if r % 2 == 0 else (("b", fb), ("a", fa))):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            _sync(device)
            wall[which], cpu[which] = time.perf_counter() - t0, time.process_time() - c0
        t["a"].append(wall["a"]), t["b"].append(wall["b"]), t["r"].append(wall["b"] / wall["a"])
        t["ca"].append(cpu["a"]), t["cb"].append(cpu["b"]), t["cr"].append(cpu["b"] / max(cpu["a"], 1e-9))
    return {k: statistics.median(v) for k, v in t.items()}


def naive_energy(model: BenchModel, conds: torch.Tensor, coefs: Sequence[float], x: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(x.shape[0], device=x.device)
    for c, cond in zip(coefs, conds):
        total = total + c * model.energy(x, cond.expand(x.shape[0], -1), None)
    return total


def naive_score(model: BenchModel, conds: torch.Tensor, coefs: Sequence[float], x: torch.Tensor) -> torch.Tensor:
    total = torch.zeros_like(x)
    for c, cond in zip(coefs, conds):
        total = total + c * model.score(x, cond.expand(x.shape[0], -1), None)
    return total


def bench_graph(device: torch.device, batch: int, repeats: int) -> list[dict]:
    reg = BenchRegistry(device)
    rows = []
    x = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1  # (B, 3, 32, 32)
    for k in range(1, 9):
        text = " & ".join(VALUES[:k])
        g = compile(text, reg).to(device)
        conds = reg.model.encode([leaf.condition for leaf in g.leaves]).to(device)  # (L, 1)
        coefs = g.linear_coefs
        # Same numbers either way (checked, so the comparison is fair).
        torch.testing.assert_close(g.energy(x)[0], naive_energy(reg.model, conds, coefs, x), rtol=1e-4, atol=1e-3)
        with torch.no_grad():
            te = _time_pair(lambda: g.energy(x), lambda: naive_energy(reg.model, conds, coefs, x), device, repeats)
        ts = _time_pair(lambda: g.score(x), lambda: naive_score(reg.model, conds, coefs, x), device, repeats)
        t_be, t_ne, sp_e, t_bs, t_ns, sp_s = te["a"], te["b"], te["r"], ts["a"], ts["b"], ts["r"]
        print(f"  {device.type} {k} leaves: energy {1e3 * t_be:.1f} vs {1e3 * t_ne:.1f} ms, "
              f"score {1e3 * t_bs:.1f} vs {1e3 * t_ns:.1f} ms", flush=True)
        rows.append({"device": device.type, "leaves": k, "batch": batch,
                     "energy_batched_ms": 1e3 * t_be, "energy_naive_ms": 1e3 * t_ne, "energy_speedup": sp_e,
                     "score_batched_ms": 1e3 * t_bs, "score_naive_ms": 1e3 * t_ns, "score_speedup": sp_s,
                     "energy_cpu_batched_ms": 1e3 * te["ca"], "energy_cpu_naive_ms": 1e3 * te["cb"],
                     "energy_cpu_speedup": te["cr"], "score_cpu_batched_ms": 1e3 * ts["ca"],
                     "score_cpu_naive_ms": 1e3 * ts["cb"], "score_cpu_speedup": ts["cr"]})
    return rows


def bench_samplers(device: torch.device, quick: bool) -> list[dict]:
    rows = []
    reg = BenchRegistry(device)
    n, steps = (16, 5) if quick else (64, 20)
    g = compile("a & b & ~c", reg)
    res = sample(g, n, seed=0, steps=steps, device=device)
    rows.append({"device": device.type, "models": "conv energy 32×32 (3 leaves + none)", "sampler": "langevin",
                 "n": n, "steps": steps, "seconds": res.seconds, "images_per_s": n / res.seconds,
                 "image_steps_per_s": n * steps / res.seconds})
    for kind, sampler in (("explicit", "langevin"), ("explicit", "mala"), ("noise_conditional", "annealed"),
                          ("implicit", "annealed")):
        g = compile("(red & circle) | ~large", GaussianRegistry(kind))
        n, steps = (1024, 100) if quick else (4096, 200)
        res = sample(g, n, seed=0, sampler=sampler, steps=steps, device=device)
        rows.append({"device": device.type, "models": f"analytic gauss ({kind})", "sampler": sampler, "n": n,
                     "steps": res.settings["total_steps"], "seconds": res.seconds, "images_per_s": n / res.seconds,
                     "image_steps_per_s": n * res.settings["total_steps"] / res.seconds})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=None, help="images per evaluation (default 32; 8 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="timing repeats (default 9; 5 with --quick)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "graph.json"))
    args = ap.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    repeats = args.repeats or (5 if args.quick else 9)
    args.batch = args.batch or (8 if args.quick else 32)
    graph_rows, sampler_rows = [], []
    for dev in devices:
        if dev.type == "cpu":
            torch.set_num_threads(1)  # CPU time then measures work, not OpenMP spin-waiting
        graph_rows += bench_graph(dev, args.batch, repeats)
        sampler_rows += bench_samplers(dev, args.quick)

    print(f"\nBatched graph vs naive per-leaf loop (one model, batch {args.batch}, median of {repeats} interleaved "
          "repeats; speedup = median of per-repeat ratios)")
    print(f"{'device':6} {'leaves':>6} {'energy batched':>15} {'naive':>9} {'speedup':>8} "
          f"{'score batched':>14} {'naive':>9} {'speedup':>8}")
    for r in graph_rows:
        print(f"{r['device']:6} {r['leaves']:>6} {r['energy_batched_ms']:>12.2f} ms {r['energy_naive_ms']:>6.2f} ms "
              f"{r['energy_speedup']:>7.2f}x {r['score_batched_ms']:>11.2f} ms {r['score_naive_ms']:>6.2f} ms "
              f"{r['score_speedup']:>7.2f}x")
    print("\nSame, process CPU time (one torch thread on the CPU; immune to waiting for a core)")
    print(f"{'device':6} {'leaves':>6} {'energy batched':>15} {'naive':>9} {'speedup':>8} "
          f"{'score batched':>14} {'naive':>9} {'speedup':>8}")
    for r in graph_rows:
        print(f"{r['device']:6} {r['leaves']:>6} {r['energy_cpu_batched_ms']:>12.2f} ms "
              f"{r['energy_cpu_naive_ms']:>6.2f} ms {r['energy_cpu_speedup']:>7.2f}x "
              f"{r['score_cpu_batched_ms']:>11.2f} ms {r['score_cpu_naive_ms']:>6.2f} ms {r['score_cpu_speedup']:>7.2f}x")
    print("\nSampler throughput")
    print(f"{'device':6} {'models':38} {'sampler':9} {'n':>5} {'steps':>5} {'images/s':>9} {'image·steps/s':>14}")
    for r in sampler_rows:
        print(f"{r['device']:6} {r['models']:38} {r['sampler']:9} {r['n']:>5} {r['steps']:>5} "
              f"{r['images_per_s']:>9.1f} {r['image_steps_per_s']:>14.0f}")
    record = {
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "batch": args.batch,
        "repeats": repeats,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
                    "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "graph": graph_rows,
        "samplers": sampler_rows,
        "targets": {"cpu_batched_never_slower": all(r["energy_speedup"] >= 1.0 and r["score_speedup"] >= 1.0
                                                    for r in graph_rows if r["device"] == "cpu"),
                    "cpu_batched_never_slower_cpu_time": all(
                        r["energy_cpu_speedup"] >= 1.0 and r["score_cpu_speedup"] >= 1.0
                        for r in graph_rows if r["device"] == "cpu"),
                    "gpu_2x_for_4plus_leaves": (all(r["score_speedup"] >= 2.0 for r in graph_rows
                                                    if r["device"] == "cuda" and r["leaves"] >= 4)
                                                if torch.cuda.is_available() else None)},
    }
    write_json(args.out, record)
    print(f"\ntargets: {record['targets']}\nwrote {args.out}")


if __name__ == "__main__":
    main()
