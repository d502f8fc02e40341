"""Where along a solve do the samples of an expression leave the data? Start from real images.

For each start level k of the sampler's noise schedule, the real images of an expression (drawn
from the generator, as the distribution metrics draw them) are noised to σ_k and the rest of the
solve (levels k, k+1, …, 0) is run with the models' own settings and conditions; a chain's drawn
continuous families (a position) are the image's own, not a new draw. Each start level's output is
scored against a disjoint set of real images with the precision of the distribution metrics (k = 3
in the judge's feature space), beside the real-vs-real floor. A perfect model keeps real images
real from every level, so what a start at level k loses is what the model's denoising at
σ ≤ σ_k costs; a start at level 0 (σ_max) is a full solve from noise.

    python training/partial_solve.py "square & red & large" --levels 8,9,10,11,12 --n 256

``--models DIR`` measures other weights; ``--prior-below`` / ``--prior-keeps`` override the models'
as in training/distribution_tune.py; ``--eta`` the SDE solver's η. Scenes only (the judge's
features and the generator's positions). Prints one line per level and, with ``--out``, appends
one JSON line per level.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def chain_values(graph, labels: list[dict], seed: int) -> dict:
    """The per-chain values of the graph's drawn leaves, with every position set to the labelled
    image's own object position (one-object labels)."""
    from conceptlang.sampling.api import draw_chain_values

    drawn = draw_chain_values(graph, len(labels), seed, "independent")
    for key in [k for k in drawn if k[1] == "position"]:
        drawn[key] = torch.tensor([[lab["objects"][0]["x"], lab["objects"][0]["y"]] for lab in labels],
                                  dtype=drawn[key].dtype)
    return drawn


def partial_solve(graph, images: np.ndarray, labels: list[dict], level: int, seed: int,
                  eta: float | None = None) -> np.ndarray:
    """uint8 (N, H, W, 3) real ``images`` noised to level ``level`` of the graph's solver schedule
    and solved from there to σ = 0 with the graph's sampler and settings (``eta`` overrides the SDE
    solver's); returns uint8 images."""
    from conceptlang.data import to_tensor, to_uint8
    from conceptlang.sampling.api import _ChainTarget, resolve_settings
    from conceptlang.sampling.samplers import SAMPLERS

    name, s, _ = resolve_settings(graph, None, None, {})
    spec = SAMPLERS[name]
    if spec.family != "ode":
        raise SystemExit(f"the models sample with {name}; this probe runs the σ-schedule solvers")
    if eta is not None:
        s["eta"] = eta
    kwargs, _ = spec.prepare(s)
    sigmas = kwargs["sigmas"]
    if not 0 <= level < len(sigmas) - 1:
        raise SystemExit(f"level {level} is not one of the schedule's 0..{len(sigmas) - 2}")
    kwargs["sigmas"] = sigmas[level:]
    target = _ChainTarget(graph, None, graph.chain_conditions(chain_values(graph, labels, seed), torch.device("cpu")))
    x0 = to_tensor(images)
    gen = torch.Generator().manual_seed(seed * 1000 + level)
    x = x0 + float(sigmas[level]) * torch.randn(x0.shape, generator=gen)
    with torch.inference_mode():
        out = spec.fn(target, x, generator=gen, disable=True, **kwargs)
    return to_uint8(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("expression")
    ap.add_argument("--levels", default="8,9,10,11,12", help="comma-separated start levels (0: σ_max)")
    ap.add_argument("--n", type=int, default=256, help="images per set (fewer if the data has fewer)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--models", default=None)
    ap.add_argument("--prior-below", default=None, help="a noise level, or 'none'")
    ap.add_argument("--prior-keeps", default=None, help="comma-separated families, or 'none'")
    ap.add_argument("--eta", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.evaluation.distribution import coverage_fraction, judge_features, reference_for, reference_seed
    from conceptlang.judge.load import load_judge
    from conceptlang.models.registry import load_registry

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from distribution_tune import override_prior

    reg = load_registry(a.models)
    for h in reg.handles.values():
        if h.kind == "implicit" and h.domain == "scenes":
            override_prior(h.impl("cpu"), a.prior_below, a.prior_keeps)
    graph = compile_expr(a.expression, reg, domain="scenes")
    ref = reference_for(graph.expr, "scenes", n_images=3 * a.n, seed=reference_seed(a.expression, 0))
    n = min(a.n, len(ref.images) // 3)
    real, floor_set, start = ref.images[:n], ref.images[n:2 * n], ref.images[2 * n:3 * n]
    judge = load_judge("scenes")
    f_real = judge_features(judge, real)

    def precision(images: np.ndarray) -> float:  # the distribution metrics' precision (k = 3)
        return coverage_fraction(judge_features(judge, images), f_real)

    floor = precision(floor_set)
    print(f"{a.expression}: {n} images a set; real-vs-real precision {floor:.3f}", flush=True)
    for level in (int(v) for v in a.levels.split(",")):
        out = partial_solve(graph, start, ref.labels[2 * n:3 * n], level, a.seed, a.eta)
        row = {"expression": a.expression, "level": level, "n": n, "precision": round(precision(out), 4),
               "floor": round(floor, 4), "models": a.models or "shipped", "seed": a.seed,
               "prior_below": a.prior_below, "prior_keeps": a.prior_keeps, "eta": a.eta}
        print(f"  from level {level}: precision {row['precision']:.3f}", flush=True)
        if a.out:
            with open(a.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
