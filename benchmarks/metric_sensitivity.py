"""How strict are precision and recall in the judge's feature space? Generator data, slightly changed.

    python benchmarks/metric_sensitivity.py [--n 256] [--seed 0]

The distribution rows of the results page (docs/experiments.md, "Distribution metrics") score
samples against generator images that satisfy the expression. This script scores a second draw of
generator images instead of samples, first as drawn (the page's floor) and then with one small,
uniform change to every image: a brightness offset of a few levels out of 255, a Gaussian blur of
a fraction of a pixel, or Gaussian pixel noise. What precision keeps under each change says how
close to the generator's rendering a sample must come to count as "inside the data". Prints a
table (mean over each domain's expressions) and writes benchmarks/results/metric_sensitivity.json
with the figures per expression.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

EXPRESSIONS = {
    "scenes": ("square", "triangle & blue", "circle & red & large", "position(0.3, 0.5) & circle & blue"),
    "faces": ("smiling", "male & eyeglasses", "~smiling & young"),
}
# (name, kind, amount): offset in levels of 255, blur s.d. in pixels, noise s.d. in levels of 255.
CHANGES = (
    ("as drawn", "none", 0.0),
    ("brightness +2", "offset", 2.0),
    ("brightness +4", "offset", 4.0),
    ("brightness +8", "offset", 8.0),
    ("blur 0.3 px", "blur", 0.3),
    ("blur 0.4 px", "blur", 0.4),
    ("blur 0.5 px", "blur", 0.5),
    ("blur 1 px", "blur", 1.0),
    ("noise 2", "noise", 2.0),
    ("noise 5", "noise", 5.0),
    ("noise 10", "noise", 10.0),
)


def changed(images: np.ndarray, kind: str, amount: float, rng: np.random.Generator) -> np.ndarray:
    """``images`` (N, H, W, 3) uint8 with one change applied to every image, clipped to [0, 255]."""
    from scipy.ndimage import gaussian_filter

    x = images.astype(np.float64)
    if kind == "offset":
        x = x + amount
    elif kind == "blur":
        x = gaussian_filter(x, sigma=(0, amount, amount, 0), mode="nearest")
    elif kind == "noise":
        x = x + rng.normal(0.0, amount, size=x.shape)
    elif kind != "none":
        raise ValueError(f"unknown change {kind!r}")
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=256, help="images per set (the page's samples per expression)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="benchmarks/results/metric_sensitivity.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from conceptlang.evaluation import distribution as D
    from conceptlang.io import write_json
    from conceptlang.judge.load import load_judge
    from conceptlang.syntax import parse

    t0 = time.perf_counter()
    rows: list[dict] = []
    for domain, texts in EXPRESSIONS.items():
        judge = load_judge(domain)
        for text in texts:
            ref = D.reference_for(parse(text), domain, n_images=2 * args.n, seed=D.reference_seed(text, args.seed))
            a, b = ref.images[: args.n], ref.images[args.n : 2 * args.n]
            fa = D.judge_features(judge, a)
            scale = D.feature_scale(fa)  # as distribution_metrics scales them
            fa = fa / scale
            rng = np.random.default_rng([args.seed, len(rows)])
            for name, kind, amount in CHANGES:
                fb = D.judge_features(judge, changed(b, kind, amount, rng)) / scale
                p, r = D.precision_recall(fa, fb)
                rows.append({"domain": domain, "expression": text, "change": name, "precision": p, "recall": r,
                             "kid": D.kid(fa, fb)})

    print(f"{args.n} generator images per set against {args.n} more (seed {args.seed}); "
          "mean over each domain's expressions")
    print("| change | " + " | ".join(f"{d} precision | {d} recall" for d in EXPRESSIONS) + " |")
    print("|---|" + "---:|---:|" * len(EXPRESSIONS))
    summary = []
    for name, _, _ in CHANGES:
        cells, entry = [], {"change": name}
        for d in EXPRESSIONS:
            sel = [r for r in rows if r["domain"] == d and r["change"] == name]
            p = float(np.mean([r["precision"] for r in sel]))
            r_ = float(np.mean([r["recall"] for r in sel]))
            entry[d] = {"precision": p, "recall": r_}
            cells += [f"{p:.2f}", f"{r_:.2f}"]
        summary.append(entry)
        print(f"| {name} | " + " | ".join(cells) + " |")
    seconds = time.perf_counter() - t0
    print(f"{seconds:.0f} s")
    write_json(Path(args.json), {"n": args.n, "seed": args.seed, "expressions": EXPRESSIONS,
                                 "summary": summary, "rows": rows, "seconds": seconds})


if __name__ == "__main__":
    main()
