#!/usr/bin/env python
"""Measure judged accuracy of a models folder over a grid of sampler settings.

    python tools/tune.py scenes --n 32 --set guidance=1,3 --set noise_scale=0.7071,0.4 \\
        --expr "red" --expr "circle & red" --out runs/tune_scenes.json

Each grid point compiles and samples every expression with ``conceptlang.compiler.compile`` and
``conceptlang.sampling.sample`` (the same path the CLI takes), then scores the images with the
domain's judge: a sample counts when the judge calls it valid *and* its judged labels satisfy the
expression. ``guidance`` is a model setting (see ``ImplicitConceptModel.eps``); ``alpha`` and
``and_mode`` are compile options; every other key is a sampler setting. The expression files
the shipped settings were chosen on are in ``tools/suites/``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COMPILE_KEYS = ("alpha", "and_mode")


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def run_grid(domain: str, exprs: list[str], grid: dict[str, list], n: int, seed: int, models_dir: str | None,
             threads: int | None = None, log=print, grid_dir: str | None = None) -> list[dict]:
    import numpy as np
    import torch

    from conceptlang.compiler import compile as compile_expr
    from conceptlang.data import to_uint8
    from conceptlang.evaluation.run import seed_for
    from conceptlang.evaluation.scoring import judge_samples, top_level_disjuncts
    from conceptlang.evaluation.suites import parse_entry_text
    from conceptlang.judge.load import load_judge
    from conceptlang.models.registry import load_registry
    from conceptlang.sampling import sample
    from conceptlang.syntax import evaluate

    if threads:
        torch.set_num_threads(threads)
    reg = load_registry(models_dir)
    judge = load_judge(domain)
    rows = []
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, combo))
        guidance = point.get("guidance")
        for h in reg.handles.values():
            if h.domain == domain and h.kind == "implicit":
                h.impl("cpu").guidance = float(guidance) if guidance is not None else float(h.entry.get("guidance", 1.0))
        copts = {k: point[k] for k in COMPILE_KEYS if k in point}
        sopts = {k: v for k, v in point.items() if k not in COMPILE_KEYS and k != "guidance"}
        for text in exprs:
            expr = parse_entry_text(text)  # definitions (`a = ...; a & b`) expanded
            t0 = time.perf_counter()
            graph = compile_expr(expr, reg, domain=domain, **copts)
            res = sample(graph, n, seed=seed_for(text, seed), device="cpu", **sopts)
            images = to_uint8(res.images)
            valid, labels, sat, reasons = judge_samples(expr, images, judge, domain)
            ok = valid & sat
            row = {**point, "expr": text, "n": n, "valid": float(valid.mean()), "satisfied": float(sat.mean()),
                   "accuracy": float(ok.mean()), "seconds": round(time.perf_counter() - t0, 1)}
            dis = top_level_disjuncts(expr)
            if dis:
                row["branches"] = [float(np.mean([bool(evaluate(d, lab)) for lab, v in zip(labels, valid) if v] or [0.0])) for d in dis]
            if grid_dir is not None:
                from conceptlang.evaluation.grids import framed_grid
                from conceptlang.evaluation.run import slug
                from conceptlang.io import save_png

                m = min(32, n)
                tag = "_".join(f"{k}{v}" for k, v in point.items())
                path = Path(grid_dir) / f"{domain}_{slug(text)}{'_' + tag if tag else ''}.png"
                save_png(path, framed_grid(images[:m], sat[:m], valid[:m], ncols=8))
                row["grid"] = str(path)
            rows.append(row)
            log(json.dumps(row))
    return rows


def summarise(rows: list[dict], grid_keys: list[str]) -> list[tuple]:
    out: dict[tuple, list[float]] = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in grid_keys), []).append(r["accuracy"])
    return sorted(((k, sum(v) / len(v), min(v)) for k, v in out.items()), key=lambda t: -t[1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domain")
    ap.add_argument("--expr", action="append", default=[])
    ap.add_argument("--set", action="append", default=[], help="KEY=V1,V2,... (a grid axis)")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--grid-dir", default=None, help="save the first 32 samples of each run as a framed grid here")
    ap.add_argument("--expr-file", default=None, help="one expression per line (# comments, [sections] ignored)")
    a = ap.parse_args(argv)
    if a.expr_file:
        from conceptlang.evaluation.suites import parse_suite

        a.expr += [e.text for e in parse_suite(Path(a.expr_file).read_text(), a.expr_file).entries]
    grid = {}
    for s in a.set:
        k, _, vs = s.partition("=")
        grid[k] = [_value(v) for v in vs.split(",")]
    rows = run_grid(a.domain, a.expr, grid, a.n, a.seed, a.models, a.threads, grid_dir=a.grid_dir)
    for key, mean, worst in summarise(rows, list(grid)):
        print(dict(zip(grid, key)), f"mean {mean:.3f} worst {worst:.3f}")
    if a.out:
        from conceptlang.io import write_json

        write_json(a.out, {"domain": a.domain, "grid": grid, "n": a.n, "rows": rows})


if __name__ == "__main__":
    main()


def plot_curves(logs: dict[str, str | Path], path: str | Path, width: int = 640, height: int = 320) -> None:
    """Training-loss curves (moving average, log scale) of run logs ``{label: log.jsonl}`` as a PNG."""
    import math

    import numpy as np
    from PIL import Image, ImageDraw

    from conceptlang.io import save_png

    series = {}
    for label, p in logs.items():
        pts: dict[int, float] = {}
        for line in Path(p).read_text().splitlines():
            r = json.loads(line)
            pts[int(r["it"])] = float(r["loss"])  # a resumed run re-logs some iterations: keep the last
        its = sorted(pts)
        series[label] = (np.array(its), np.array([pts[i] for i in its]))
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 60, width - 10, 10, height - 30
    xmax = max(s[0].max() for s in series.values())
    lo = min(math.log10(max(s[1].min(), 1e-6)) for s in series.values())
    hi = max(math.log10(s[1].max()) for s in series.values())
    d.rectangle([left, top, right, bottom], outline="black")
    for k in range(int(math.floor(lo)), int(math.ceil(hi)) + 1):
        y = bottom - (k - lo) / max(hi - lo, 1e-6) * (bottom - top)
        if top <= y <= bottom:
            d.line([left, y, right, y], fill=(220, 220, 220))
            d.text((5, y - 6), f"1e{k}", fill="black")
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + frac * (right - left)
        d.text((x - 10, bottom + 5), f"{int(frac * xmax)}", fill="black")
    colors = [(200, 40, 40), (40, 80, 220), (30, 150, 60), (150, 60, 180), (220, 140, 20)]
    for j, (label, (its, loss)) in enumerate(series.items()):
        k = max(1, len(loss) // 50)
        smooth = np.convolve(np.log10(loss), np.ones(k) / k, mode="valid")
        xs = left + its[k - 1:] / xmax * (right - left)
        ys = bottom - (smooth - lo) / max(hi - lo, 1e-6) * (bottom - top)
        d.line(list(zip(xs.tolist(), ys.tolist())), fill=colors[j % len(colors)], width=2)
        d.text((right - 150, top + 5 + 14 * j), label, fill=colors[j % len(colors)])
    d.text((left + 5, bottom - 15), "iteration -> (training loss, log scale)", fill="black")
    save_png(path, np.asarray(img))
