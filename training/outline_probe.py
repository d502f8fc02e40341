"""How exactly do samples place an object's outline, and how much does that cost in precision?

Two measurements for a one-object scenes expression:

* **Sensitivity.** Generator images of the expression are re-rendered from their labels with each
  object's extent changed by Gaussian jitter of sd ``--jitter`` pixels (and by a constant offset,
  ``--offset``), and scored against a disjoint real set with the distribution metrics' precision
  (k = 3 in the judge's feature space), beside the real-vs-real floor. It says how far from the
  generator's outline an image may be and still count as real.
* **The samples' outlines** (squares only). For an axis-aligned square of a palette colour, the
  side is read off the image as the mean, over the square's interior rows, of the row's summed
  coverage (fill channel over its palette value), and likewise the height over columns: exactly
  8.1 or 13.5 px in every generator image. Printed for the samples (shipped sampler and settings,
  independent positions) as mean ± sd, with the sd of width − height and their precision.

    python training/outline_probe.py "square & red & small" --n 128 --seed 5

``--models DIR`` measures other weights; ``--no-samples`` prints the sensitivity alone. Prints one
line per measurement and, with ``--out``, appends one JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def square_sides(images: np.ndarray, rgb) -> np.ndarray:
    """(N, 2) width and height in pixels of the one axis-aligned square of colour ``rgb`` in each
    uint8 image (N, H, W, 3): the mean summed coverage of the rows (columns) whose neighbours are
    fully covered too; NaN where the square has no such row."""
    ch = int(np.argmax(rgb))
    cov = images[..., ch].astype(np.float64) / float(rgb[ch])  # (N, H, W)
    out = np.full((len(images), 2), np.nan)
    for axis in (0, 1):
        c = cov if axis == 0 else cov.transpose(0, 2, 1)  # rows of c: rows (width) or columns (height)
        full = c.max(axis=2) > 0.97  # (N, H)
        inner = full[:, 1:-1] & full[:, :-2] & full[:, 2:]
        sums = c.sum(axis=2)[:, 1:-1]
        count = inner.sum(axis=1)
        ok = count > 0
        out[ok, axis] = (sums * inner).sum(axis=1)[ok] / count[ok]
    return out


def rerender(labels: list[dict], extent_change: np.ndarray, image_size: int = 32) -> np.ndarray:
    """uint8 images (N, S, S, 3) of one-object scene ``labels`` rendered as the generator renders
    them, each object's extent changed by ``extent_change[i]`` pixels. With no change they are the
    generator's images up to one grey level in a few edge pixels (labels keep 6 decimals)."""
    from conceptlang.data import scenes

    objs = [lab["objects"][0] for lab in labels]
    shape = np.array([scenes.SHAPES.index(o["shape"]) for o in objs])
    colour = scenes.PALETTE_ARRAY[[scenes.COLORS.index(o["color"]) for o in objs]]  # (N, 3)
    extent = np.array([scenes.SIZE_EXTENT[o["size"]] for o in objs]) * image_size + np.asarray(extent_change)
    centre = np.array([[o["x"], o["y"]] for o in objs]) * image_size
    px = np.arange(image_size, dtype=np.float32) + 0.5
    cov = scenes.coverage(shape, extent.astype(np.float32), centre.astype(np.float32), px)
    return np.clip(cov[..., None] * colour[:, None, None, :] + 0.5, 0, 255).astype(np.uint8)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("expression")
    ap.add_argument("--n", type=int, default=128, help="images per set (fewer if the data has fewer)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--jitter", default="0.01,0.02,0.03,0.05", help="comma-separated sd of the extent, px")
    ap.add_argument("--offset", default="0.02,0.05", help="comma-separated constant changes of the extent, px")
    ap.add_argument("--models", default=None)
    ap.add_argument("--no-samples", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.data import to_uint8
    from conceptlang.data.scenes import PALETTE
    from conceptlang.evaluation.distribution import coverage_fraction, judge_features, reference_for, reference_seed
    from conceptlang.judge.load import load_judge
    from conceptlang.models.registry import load_registry
    from conceptlang.sampling.api import sample

    graph = compile_expr(a.expression, load_registry(a.models), domain="scenes")
    ref = reference_for(graph.expr, "scenes", n_images=2 * a.n, seed=reference_seed(a.expression, 0))
    n = min(a.n, len(ref.images) // 2)
    real, other, labels = ref.images[:n], ref.images[n:2 * n], ref.labels[n:2 * n]
    if any(len(lab["objects"]) != 1 for lab in labels):
        raise SystemExit("outline_probe measures one-object expressions")
    judge = load_judge("scenes")
    f_real = judge_features(judge, real)

    def precision(images: np.ndarray) -> float:
        return round(coverage_fraction(judge_features(judge, images), f_real), 4)

    row: dict = {"expression": a.expression, "n": n, "seed": a.seed, "models": a.models or "shipped",
                 "floor": precision(other), "rerendered": precision(rerender(labels, np.zeros(n)))}
    print(f"{a.expression}: {n} images a set; real-vs-real precision {row['floor']:.3f}, "
          f"re-rendered from the labels {row['rerendered']:.3f}", flush=True)
    rng = np.random.default_rng(a.seed)
    row["jitter"] = {}
    for sd in (float(v) for v in a.jitter.split(",") if v):
        row["jitter"][sd] = precision(rerender(labels, sd * rng.standard_normal(n)))
        print(f"  extent jittered, sd {sd} px: precision {row['jitter'][sd]:.3f}", flush=True)
    row["offset"] = {}
    for d in (float(v) for v in a.offset.split(",") if v):
        row["offset"][d] = precision(rerender(labels, np.full(n, d)))
        print(f"  extent + {d} px: precision {row['offset'][d]:.3f}", flush=True)
    colours = [c for c in PALETTE if c in {o["color"] for lab in labels for o in lab["objects"]}]
    squares = all(o["shape"] == "square" for lab in labels for o in lab["objects"]) and len(colours) == 1
    if not a.no_samples and squares:
        images = to_uint8(sample(graph, n, seed=a.seed, draws="independent").images)
        rgb = np.array(PALETTE[colours[0]])
        real_sides, sides = square_sides(real, rgb), square_sides(images, rgb)
        row["samples"] = {"precision": precision(images), "real_side": float(np.nanmean(real_sides)),
                          "side_mean": float(np.nanmean(sides)), "side_sd": float(np.nanstd(sides)),
                          "width_minus_height_sd": float(np.nanstd(sides[:, 0] - sides[:, 1])),
                          "unmeasured": int(np.isnan(sides).any(axis=1).sum())}
        s = row["samples"]
        print(f"  samples: precision {s['precision']:.3f}; side {s['side_mean']:.3f} ± {s['side_sd']:.3f} px "
              f"(real {s['real_side']:.3f}), sd of width − height {s['width_minus_height_sd']:.3f} px", flush=True)
    if a.out:
        with open(a.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
