"""Object-level composition: one position model conditioned on two positions at once.

``position(0.25, 0.3) & position(0.75, 0.7)`` sums the position model's energy at both places;
the paper shows the result is one image with an object at each. A sample counts as a success when
the judge calls it valid and finds exactly two objects, each target matched to a different
object whose centre is within ``tolerance`` of it (the same 0.1 as the language's
``position(x, y)`` semantics).

The shipped object-level set (``models/objects``, see :func:`objects_registry`) is a scenes model
whose position condition names *one* object of a one- or two-object scene; the main scenes model
saw one object per image for most of its training, so a product of its position concepts asks
for two objects that each of its factors says are alone. The shipped ``models/manifest.json``
lists this set under ``model_sets``, so compiling against the default models picks it for every
expression that places two objects (conceptlang/compiler/select.py); :func:`objects_registry`
names it directly.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from conceptlang.evaluation.distribution import DistributionMetrics
from conceptlang.evaluation.grids import framed_grid
from conceptlang.evaluation.run import JudgeCache, seed_for
from conceptlang.evaluation.stats import Proportion

DEFAULT_LAYOUTS: tuple[tuple[tuple[float, float], ...], ...] = (
    ((0.25, 0.3), (0.75, 0.7)),
    ((0.25, 0.75), (0.75, 0.25)),
    ((0.25, 0.5), (0.75, 0.5)),
)
TOLERANCE = 0.1


def objects_models_dir(models: str | Path | None = None) -> Path:
    """Where the object-level model set lives: ``<models>/objects`` (default: $CONCEPTLANG_MODELS, else the shipped models)."""
    from conceptlang.models.registry import default_models_dir

    return Path(models if models is not None else default_models_dir()) / "objects"


def objects_registry(models: str | Path | None = None):
    """The registry object-level composition runs on, and the folder it came from.

    ``<models>/objects`` when it holds a manifest (the set trained for it), else ``<models>``
    itself (default: $CONCEPTLANG_MODELS, else the shipped models), so a user's own models folder
    without an object-level set still runs the experiment on its position concept.
    """
    from conceptlang.models.registry import load_registry

    sub = objects_models_dir(models)
    where = sub if (sub / "manifest.json").is_file() else sub.parent
    return load_registry(where), where


def layout_expression(targets: Sequence[tuple[float, float]]) -> str:
    return " & ".join(f"position({x:g}, {y:g})" for x, y in targets)


def matches_targets(objects: Sequence[dict], targets: Sequence[tuple[float, float]], tolerance: float = TOLERANCE) -> bool:
    """Exactly len(targets) objects, and some one-to-one assignment puts each within ``tolerance``."""
    if len(objects) != len(targets):
        return False
    pts = [(float(o["x"]), float(o["y"])) for o in objects]
    for perm in itertools.permutations(range(len(pts))):
        if all(np.hypot(pts[p][0] - tx, pts[p][1] - ty) <= tolerance for p, (tx, ty) in zip(perm, targets)):
            return True
    return False


@dataclass
class LayoutResult:
    targets: tuple[tuple[float, float], ...]
    expression: str
    seed: int
    n: int
    accuracy: Proportion  # valid, exactly two objects, both within tolerance
    valid: Proportion
    exactly_two: Proportion
    object_counts: dict[str, int]
    seconds: float
    grid: str | None = None
    error: str | None = None
    distribution: DistributionMetrics | None = None  # the samples against generator two-object scenes at the targets
    domain: str = "scenes"
    per_sample: dict[str, list[bool]] | None = None  # "valid", "satisfied" (two objects at the targets)
    images: np.ndarray | None = field(default=None, repr=False)  # uint8 samples, kept on request; never in JSON

    @property
    def text(self) -> str:  # the name distribution tables use
        return self.expression

    def to_json(self) -> dict:
        return {
            "targets": [list(t) for t in self.targets],
            "expression": self.expression,
            "seed": self.seed,
            "n": self.n,
            "accuracy": self.accuracy.to_json(),
            "valid": self.valid.to_json(),
            "exactly_two": self.exactly_two.to_json(),
            "object_counts": self.object_counts,
            "seconds": round(self.seconds, 3),
            "grid": self.grid,
            "error": self.error,
            "distribution": None if self.distribution is None else self.distribution.to_json(),
        }


def judge_layout(labels: Sequence[dict], valid: np.ndarray, targets, tolerance: float = TOLERANCE):
    """→ (success (N,), exactly-k (N,), histogram of object counts)."""
    counts = [len(lab.get("objects", [])) for lab in labels]
    k = len(targets)
    exact = np.array([c == k for c in counts], dtype=bool)
    ok = np.array(
        [bool(valid[i]) and matches_targets(lab.get("objects", []), targets, tolerance) for i, lab in enumerate(labels)],
        dtype=bool,
    )
    hist: dict[str, int] = {}
    for c in counts:
        key = str(c) if c <= 3 else "4+"
        hist[key] = hist.get(key, 0) + 1
    return ok, exact, dict(sorted(hist.items()))


def evaluate_layout(
    targets: Sequence[tuple[float, float]],
    registry,
    n: int = 64,
    seed: int = 0,
    device: str = "auto",
    judges: JudgeCache | None = None,
    grid_path: str | Path | None = None,
    tolerance: float = TOLERANCE,
    sample_kwargs: dict | None = None,
    distribution: bool = False,
    keep_images: bool = False,
) -> LayoutResult:
    """Sample the layout's expression ``n`` times and judge each sample (see the module docstring).

    ``distribution``: also compare the samples with generator two-object scenes whose objects
    sit at the targets (:func:`conceptlang.evaluation.distribution.distribution_metrics`: shape,
    colour and size per object, precision / recall / KID, near-duplicates).
    """
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.data import to_uint8
    from conceptlang.io import save_png
    from conceptlang.sampling import sample

    judges = judges or JudgeCache()
    targets = tuple((float(x), float(y)) for x, y in targets)
    text = layout_expression(targets)
    s = seed_for(text, seed)
    t0 = time.perf_counter()
    graph = compile_expr(text, registry)
    res = sample(graph, n, seed=s, device=device, **(sample_kwargs or {}))
    images = to_uint8(res.images)  # (N, H, W, 3)
    domain = getattr(graph, "domain", None) or "scenes"
    judge = judges(domain)
    # Scenes validity is checked for exactly len(targets) objects (the judge's own default allows 1 or 2).
    valid = np.asarray(
        judge.valid(images, n_objects=len(targets)) if domain == "scenes" else judge.valid(images), dtype=bool
    )
    labels = judge.labels(images)
    ok, exact, hist = judge_layout(labels, valid, targets, tolerance)
    metrics = None
    if distribution:
        from conceptlang.evaluation.distribution import distribution_metrics, reference_seed
        from conceptlang.syntax.parser import parse_expr

        metrics = distribution_metrics(parse_expr(text), domain, images, labels, ok, judge, reference_seed(text, seed),
                                       n_objects=len(targets),
                                       holds=lambda lab: matches_targets(lab.get("objects", []), targets, tolerance))
    grid = None
    if grid_path is not None:
        m = min(32, n)
        save_png(grid_path, framed_grid(images[:m], ok[:m], valid[:m], ncols=8))
        grid = str(grid_path)
    return LayoutResult(
        targets=targets,
        expression=text,
        seed=s,
        n=n,
        accuracy=Proportion(int(ok.sum()), n),
        valid=Proportion(int(valid.sum()), n),
        exactly_two=Proportion(int(exact.sum()), n),
        object_counts=hist,
        seconds=time.perf_counter() - t0,
        grid=grid,
        distribution=metrics,
        domain=domain,
        per_sample={"valid": valid.tolist(), "satisfied": ok.tolist()},
        images=images if keep_images else None,
    )


def markdown_table(results: Sequence[LayoutResult]) -> str:
    lines = [
        "| expression | valid | exactly two objects | two objects at the targets [95% CI] | object counts | s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        counts = ", ".join(f"{k}: {v}" for k, v in r.object_counts.items())
        lines.append(
            f"| `{r.expression}` | {r.valid.value:.2f} | {r.exactly_two.value:.2f} | {r.accuracy.format()} | {counts} | {r.seconds:.1f} |"
        )
    pooled = Proportion(0, 0)
    for r in results:
        pooled = pooled + r.accuracy
    lines.append(f"| **all layouts** | | | **{pooled.format()}** | | |")
    return "\n".join(lines)
