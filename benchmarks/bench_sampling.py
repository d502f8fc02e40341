"""Benchmark: samplers side by side — images/s, network evaluations, accuracy and attribute TV.

    python benchmarks/bench_sampling.py                      # ~10 min on one idle CPU thread
    python benchmarks/bench_sampling.py --n 64 --threads 2   # tighter accuracy figures
    python benchmarks/bench_sampling.py --expressions training/sampler_tuning.txt --configs new,heun:7,dpmpp_2m:13
    python benchmarks/bench_sampling.py --device cuda --n 256 # on a GPU

For every expression and every sampler configuration, on the same seed (so every configuration
starts from the same chains' seed streams): seconds and images/s of the sampling loop, network
evaluations per sample (the sidecar's ``nfe``: rows through the networks, guidance's prior
included), the bare network's forward throughput on the same rows in the calls the sampler makes
(rows/s, and the images/s it would allow at that nfe: the limit), judged accuracy (valid and satisfying) with its 95% Wilson
interval, and the attribute TV of the valid satisfying samples against the generator's
conditional (:func:`conceptlang.evaluation.distribution.fidelity`, mean over the open families,
beside the TV a perfect sampler would score at that count), and precision and recall (k = 3, in
the judge's feature space, against as many generator images satisfying the expression as samples,
beside a second such draw: the floor; :func:`conceptlang.evaluation.distribution.distribution_metrics`).

Configurations (``--configs``, comma-separated):

* ``old``: the previous shipped default's sampler, annealed Langevin over 39 geometric levels (σ 10 → 0.01),
  2 steps a level, step 3.06e-5, noise 0.7071, final Tweedie denoise, no restarts whatever the manifest sets (79
  evaluations), on the models as the manifest sets them (their guidance settings, mirror average and
  weight levels apply to it too: 198 network rows a scenes sample with the shipped manifest);
* ``new``: the registry's settings (models/manifest.json's ``sampler`` sections); ``new:KEY=VALUE:...``
  those with some changed, e.g. ``new:s_churn=0``, ``new:corrector_steps=2:corrector_sigma=0.3``;
* ``NAME:STEPS`` or ``NAME:STEPS:KEY=VALUE:...``: sampler NAME with that many steps, e.g.
  ``heun:7``, ``dpmpp_2m:13``, ``heun:7:s_churn=2``, ``dpmpp_2m:13:sigma_max=80`` (a ``max_nfe``
  given here caps the steps: ``dpmpp_2m:20:max_nfe=40`` runs 13 on a 3-row expression);
* on CUDA, ``cuda_bf16=true`` and ``cuda_channels_last=true`` in any config switch on bf16
  autocast or the channels-last layout of the sampling path for it (both are off by default), e.g.
  ``new:cuda_bf16=true:cuda_channels_last=true`` (the bare network's limit is measured with the
  same switches).

Prints one table, a pooled line per configuration (accuracy over all samples with its Wilson
interval, mean TV, precision and recall over the expressions) and writes
benchmarks/results/sampling.json (``--json``). A long run split into parts, one process per core
(``--part 1/2`` and ``--part 2/2``: every other expression of ``--expressions`` each), is put back
together with ``--merge PART.json ... --json OUT``: the parts must be complete runs at the same n and seed with no (expression,
configuration) in two of them; the merged file keeps every part's environment and command. Every
file records the command line that wrote it (``command``) and, with ``--note TEXT``, a note on
why the run was made. The default run (the
four operators on scenes, n = 16, one thread) takes about ten minutes on an idle core; accuracy
at n = 16 has a ±20-point interval, so compare configurations on ``--n 64`` or more (each
doubling of n doubles the time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

OLD_DEFAULT = {"sampler": "annealed", "sigma_max": 10.0, "sigma_min": 0.01, "n_sigmas": 39, "steps_per_sigma": 2,
               "step_size": 3.06e-05, "noise_scale": 0.7071, "final_denoise": True, "clamp": False,
               "restarts": 0}  # a manifest's restarts belong to its new solver, not to the old sweep
DEFAULT_EXPRESSIONS = [  # (domain, operator, expression): one of each operator, from the scenes suite
    ("scenes", "single", "circle"),
    ("scenes", "and-4", "circle & red & large & position(0.5, 0.5)"),
    ("scenes", "not", "circle & ~red"),
    ("scenes", "or", "circle | square"),
]
DEFAULT_CONFIGS = "old,new,heun:4,heun:7,heun:12,dpmpp_2m:7,dpmpp_2m:13,dpmpp_2m:25,dpmpp_2m_sde:7,dpmpp_2m_sde:25"


def _value(text: str) -> int | float | bool | None:
    if text in ("true", "false"):
        return text == "true"
    if text == "none":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_config(text: str) -> tuple[str, dict]:
    """``old`` | ``new[:KEY=VALUE...]`` | ``NAME:STEPS[:KEY=VALUE...]`` → (label, sample() keyword arguments)."""
    if text == "old":
        return text, dict(OLD_DEFAULT)
    parts = text.split(":")
    if parts[0] == "new":
        kw: dict = {}
        items = parts[1:]
    elif len(parts) < 2:
        raise SystemExit(f"bad config {text!r}: use old, new[:KEY=VALUE...] or NAME:STEPS[:KEY=VALUE...]")
    else:
        try:
            kw = {"sampler": parts[0], "steps": int(parts[1])}
        except ValueError:
            raise SystemExit(f"bad step count {parts[1]!r} in config {text!r}") from None
        items = parts[2:]
    for item in items:
        key, _, value = item.partition("=")
        try:
            kw[key] = _value(value)
        except ValueError:
            raise SystemExit(f"bad setting {item!r} in config {text!r}") from None
    return text, kw


def read_expressions(path: str) -> list[tuple[str, str, str]]:
    """(domain, operator, text) per entry of a tuning list or suite (conceptlang.evaluation.suites.load_tuning_list;
    no ``@domain`` header: scenes)."""
    from conceptlang.evaluation.suites import load_tuning_list

    return [(s.domain or "scenes", operator_of(e.text), e.text) for s in load_tuning_list(path) for e in s.entries]


def part_of(items: list, spec: str) -> list:
    """``spec`` "K/N" (1 ≤ K ≤ N): every N-th item from the K-th on, so that parts 1/N … N/N together hold each
    item once."""
    k, _, n = spec.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        raise SystemExit(f"--part must be K/N with 1 <= K <= N, got {spec!r}") from None
    if not 1 <= k <= n:
        raise SystemExit(f"--part must be K/N with 1 <= K <= N, got {spec!r}")
    return items[k - 1::n]


def operator_of(text: str) -> str:
    if "|" in text:
        return "or"
    if "~" in text:
        return "not"
    k = text.count("&") + 1
    return "single" if k == 1 else f"and-{k}"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


CUDA_SWITCHES = {"cuda_bf16": "CUDA_BF16", "cuda_channels_last": "CUDA_CHANNELS_LAST"}


@contextlib.contextmanager
def cuda_switches(switches: dict):
    """Set conceptlang.models.concept_model's CUDA switches (``cuda_bf16``, ``cuda_channels_last``) for one config."""
    from conceptlang.models import concept_model

    saved = {attr: getattr(concept_model, attr) for attr in CUDA_SWITCHES.values()}
    try:
        for key, value in switches.items():
            if not isinstance(value, bool):
                raise SystemExit(f"{key} takes true or false, not {value!r}")
            setattr(concept_model, CUDA_SWITCHES[key], value)
        yield
    finally:
        for attr, value in saved.items():
            setattr(concept_model, attr, value)


def network_rows_per_second(graph, batch: int, device: torch.device, repeats: int = 3) -> float | None:
    """Rows/s of the bare network (noise prediction, no guidance or composition) on ``batch`` rows,
    in the calls the sampler makes: one call on an accelerator, and on the CPU slices of the rows
    that ``graph.cpu_chunk_values`` allows (the graph slices its stacked batch so, and a network
    on the CPU runs small slices faster per row than one large call)."""
    impl = getattr(graph.models[0], "impl", None)
    if impl is None:
        return None
    model = impl(device)
    c, h, w = graph.image_shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, c, h, w), generator=gen).to(device)
    cond = model.encode([graph.leaves[0].condition]).expand(batch, -1).to(device)
    sigma = torch.full((batch,), 0.5, device=device)
    per_call = batch
    if device.type == "cpu" and graph.cpu_chunk_values:
        per_call = max(1, min(batch, graph.cpu_chunk_values // (c * h * w)))

    def forward() -> None:
        for a in range(0, batch, per_call):
            model.raw_eps(x[a:a + per_call], cond[a:a + per_call], sigma[a:a + per_call])

    best = float("inf")
    with torch.inference_mode():
        forward()  # warm-up
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            forward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    model.forward_rows -= batch * (repeats + 1)  # not sampling work
    return batch / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16, help="samples per expression and configuration")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS)
    ap.add_argument("--expressions", default=None, help="file of expressions (@domain lines), else the built-in four")
    ap.add_argument("--part", default=None, metavar="K/N",
                    help="only every N-th expression from the K-th on (K = 1 … N): one part of a run split over processes")
    ap.add_argument("--models", default=None, help="models directory (default: the shipped models)")
    ap.add_argument("--no-judge", action="store_true", help="timing and nfe only")
    ap.add_argument("--json", default="benchmarks/results/sampling.json")
    ap.add_argument("--merge", nargs="+", metavar="PART", default=None,
                    help="merge these complete runs' JSON files into --json (nothing is sampled)")
    ap.add_argument("--note", default=None, help="a note recorded in the JSON (why the run was made)")
    args = ap.parse_args()
    recorded = {"command": command_line(sys.argv), **({"note": args.note} if args.note else {})}
    if args.merge:
        from conceptlang.io import write_json

        merged = merge_runs([json.loads(Path(p).read_text()) for p in args.merge], args.merge)
        report(merged["rows"], merged["speedup_new_vs_old"], merged["pooled"])
        write_json(Path(args.json), {**recorded, **merged})
        print(f"wrote {args.json}")
        return
    torch.set_num_threads(args.threads)

    from conceptlang.compiler import compile as compile_expr
    from conceptlang.data import to_uint8
    from conceptlang.evaluation.distribution import distribution_metrics, fidelity, reference_for, reference_seed
    from conceptlang.evaluation.run import seed_for
    from conceptlang.evaluation.scoring import judge_samples
    from conceptlang.io import write_json
    from conceptlang.judge.load import load_judge
    from conceptlang.models.registry import load_registry
    from conceptlang.sampling import resolve_device, sample

    device = resolve_device(args.device)
    registry = load_registry(args.models)
    configs = [parse_config(c.strip()) for c in args.configs.split(",") if c.strip()]
    exprs = read_expressions(args.expressions) if args.expressions else DEFAULT_EXPRESSIONS
    if args.part:
        exprs = part_of(exprs, args.part)
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{args.threads} thread(s), device {device}, n = {args.n}, seed {args.seed}")
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "threads": args.threads, "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
           "n": args.n, "seed": args.seed}
    judges: dict = {}
    rows = []
    for domain, op, text in exprs:
        graph = compile_expr(text, registry)
        seed = seed_for(text, args.seed)
        limits: dict = {}
        ref = None
        if not args.no_judge:
            judges.setdefault(domain, load_judge(domain))
            ref = reference_for(graph.expr, domain, 0, reference_seed(text, args.seed))
            floor_ref = reference_for(graph.expr, domain, 0, reference_seed(text, args.seed) + 1, n_labels=args.n)
        for label, kw in configs:
            kw = dict(kw)
            switches = {k: kw.pop(k) for k in CUDA_SWITCHES if k in kw}
            with cuda_switches(switches):
                key = tuple(sorted(switches.items()))
                if key not in limits:
                    limits[key] = network_rows_per_second(graph, args.n, device)
                limit = limits[key]
                res = sample(graph, args.n, seed=seed, device=device, **kw)
            nfe = res.settings.get("nfe")
            row = {"domain": domain, "operator": op, "expression": text, "config": label,
                   "sampler": res.settings["sampler"], "steps": res.settings.get("total_steps"),
                   "score_evals": res.settings.get("score_evals"), "nfe": nfe, "seconds": round(res.seconds, 3),
                   "images_per_second": round(args.n / res.seconds, 3),
                   "network_rows_per_second": None if limit is None else round(limit, 1),
                   "limit_images_per_second": None if limit is None or not nfe else round(limit / nfe, 3)}
            if not args.no_judge:
                images = to_uint8(res.images)
                valid, labels, satisfied, _ = judge_samples(graph.expr, images, judges[domain], domain)
                ok = valid & satisfied
                lo, hi = wilson(int(ok.sum()), args.n)
                fams = fidelity(domain, graph.expr, [lab for lab, o in zip(labels, ok) if o], ref.labels,
                                floor_ref.labels[:int(ok.sum())])
                row.update({"accuracy": round(float(ok.mean()), 4), "accuracy_ci95": [round(lo, 4), round(hi, 4)],
                            "tv": None if not fams else round(float(np.mean([f.tv for f in fams])), 4),
                            "tv_floor": None if not fams else round(float(np.mean([f.floor for f in fams])), 4),
                            "tv_families": {f.family: round(f.tv, 4) for f in fams}})
                m = distribution_metrics(graph.expr, domain, images, labels, ok, judges[domain],
                                         reference_seed(text, args.seed))
                if m is not None and m.precision is not None:
                    row.update({k: round(float(getattr(m, k)), 4) for k in
                                ("precision", "recall", "precision_floor", "recall_floor")})
            rows.append(row)
            print(_line(row), flush=True)
        write_json(Path(args.json), {**recorded, "environment": env, "rows": rows, "partial": True})  # so far
    speedups, pools = _speedups(rows), pooled(rows, args.n)
    report(rows, speedups, pools)
    env["load_average_1min_at_end"] = os.getloadavg()[0]
    write_json(Path(args.json), {**recorded, "environment": env, "rows": rows, "speedup_new_vs_old": speedups,
                                 "pooled": pools})
    print(f"wrote {args.json}")


def command_line(argv: list[str]) -> str:
    """How this script was called, as a shell command from the repository root."""
    import shlex

    return shlex.join(["python", "benchmarks/bench_sampling.py", *argv[1:]])


def merge_runs(parts: list[dict], names: list[str]) -> dict:
    """One run's JSON from parts of it (each a complete run of some of the expressions)."""
    envs = [p.get("environment", {}) for p in parts]
    for name, part in zip(names, parts):
        if part.get("partial"):
            raise SystemExit(f"{name} is a partial run (it stopped before its last expression)")
    for key in ("n", "seed"):
        values = {e.get(key) for e in envs}
        if len(values) > 1:
            raise SystemExit(f"the parts differ in {key}: {sorted(values, key=str)}")
    rows, seen = [], {}
    for name, part in zip(names, parts):
        for r in part["rows"]:
            key = (r["domain"], r["expression"], r["config"])
            if key in seen:
                raise SystemExit(f"{r['expression']!r} ({r['config']}) is in both {seen[key]} and {name}")
            seen[key] = name
            rows.append(r)
    return {"environment": envs[0], "environments": envs, "merged_from": [str(n) for n in names],
            "part_commands": [p.get("command") for p in parts], "rows": rows,
            "speedup_new_vs_old": _speedups(rows), "pooled": pooled(rows, envs[0]["n"])}


def pooled(rows: list[dict], n: int) -> dict[str, dict]:
    """Per configuration, ``n`` samples an expression: samples satisfied of all (accuracy pooled,
    with its Wilson interval) and the expressions' mean TV, precision and recall (each over the rows
    that have it)."""
    out: dict[str, dict] = {}
    for cfg in dict.fromkeys(r["config"] for r in rows):
        rs = [r for r in rows if r["config"] == cfg]
        entry: dict = {"expressions": len(rs)}
        if all("accuracy" in r for r in rs):
            k = sum(round(r["accuracy"] * n) for r in rs)
            lo, hi = wilson(k, n * len(rs))
            entry.update({"satisfied": k, "samples": n * len(rs), "accuracy": k / (n * len(rs)),
                          "accuracy_ci95": [lo, hi]})
            for key in ("tv", "precision", "recall"):
                vals = [r[key] for r in rs if r.get(key) is not None]
                entry[key] = float(np.mean(vals)) if vals else None
        out[cfg] = entry
    return out


def report(rows: list[dict], speedups: dict[str, float], pools: dict[str, dict]) -> None:
    print()
    print(table(rows))
    for cfg, p in pools.items():
        if "accuracy" in p:
            extra = "  ".join(f"{k} {p[k]:.3f}" for k in ("tv", "precision", "recall") if p[k] is not None)
            print(f"{cfg}: {p['satisfied']} of {p['samples']} satisfied, accuracy {p['accuracy']:.4f} "
                  f"[{p['accuracy_ci95'][0]:.4f}, {p['accuracy_ci95'][1]:.4f}]  {extra}")
    if speedups:
        print()
        for k, v in speedups.items():
            print(f"new vs old on {k}: {v:.2f}x images/s")


def _speedups(rows: list[dict]) -> dict[str, float]:
    by = {(r["expression"], r["config"]): r for r in rows}
    out = {}
    for (text, cfg), r in by.items():
        if cfg == "new" and (text, "old") in by:
            out[text] = r["images_per_second"] / by[(text, "old")]["images_per_second"]
    if out:
        out["all (geometric mean)"] = float(np.exp(np.mean(np.log(list(out.values())))))
    return out


def _line(r: dict) -> str:
    acc = "" if "accuracy" not in r else f"  acc {r['accuracy']:.2f}  TV {r['tv'] if r['tv'] is not None else '-'}"
    if "precision" in r:
        acc += f"  P {r['precision']:.2f}  R {r['recall']:.2f}"
    return (f"{r['operator']:7s} {r['expression'][:44]:44s} {r['config']:18s} nfe {r['nfe']!s:>6}  "
            f"{r['images_per_second']:7.2f} img/s{acc}")


def table(rows: list[dict]) -> str:
    head = ("| operator | expression | config | nfe | images/s | limit images/s | accuracy [95% CI] | TV (floor) "
            "| precision (floor) | recall (floor) |\n|---|---|---|---:|---:|---:|---|---|---|---|")
    lines = [head]
    for r in rows:
        acc = "–" if "accuracy" not in r else f"{r['accuracy']:.2f} [{r['accuracy_ci95'][0]:.2f}, {r['accuracy_ci95'][1]:.2f}]"
        tv = "–" if r.get("tv") is None else f"{r['tv']:.2f} ({r['tv_floor']:.2f})"
        lim = "–" if r["limit_images_per_second"] is None else f"{r['limit_images_per_second']:.2f}"
        pr = {k: "–" if r.get(k) is None else f"{r[k]:.2f} ({r[k + '_floor']:.2f})" for k in ("precision", "recall")}
        text = r["expression"].replace("|", "\\|")  # a Markdown table cell
        lines.append(f"| {r['operator']} | `{text}` | {r['config']} | {r['nfe']} | "
                     f"{r['images_per_second']:.2f} | {lim} | {acc} | {tv} | {pr['precision']} | {pr['recall']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
