"""How well energy-based concept inference recovers the ground truth of generated images.

Images come from the domain's generator (one object for scenes), so their true labels are known.
For each discrete family: the fraction of images whose lowest-energy value is the true one
(target ≥ 95%); for position: the distance between the estimated and the true centre (target
≤ 0.05). The judge is run on the same images for comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from conceptlang.evaluation.stats import Proportion
from conceptlang.inference.inference import infer_batch

POSITION_TARGET = 0.05
DISCRETE_TARGET = 0.95


def true_value(labels: dict, family) -> object:
    """The value of ``family`` in a labels dict: a value name, a bool (one-value family), (x, y), or None."""
    objects = labels.get("objects") or []
    if family.kind == "continuous":
        if not objects:
            return None
        return tuple(float(objects[0][p]) for p in family.params)
    if len(family.values) == 1:
        v = family.values[0]
        return bool(labels.get(f"{family.name}.{v}", labels.get(v, False)))
    if objects and family.name in objects[0]:
        return objects[0][family.name]
    present = [v for v in family.values if labels.get(f"{family.name}.{v}", False)]
    return present[0] if len(present) == 1 else None


@dataclass
class InferenceAccuracy:
    domain: str
    n: int
    seed: int
    split: str
    energy: dict[str, Proportion]  # discrete family → correct / n
    judge: dict[str, Proportion]
    position_errors: dict[str, list[float]] = field(default_factory=dict)  # family → per-image distance
    judge_position_errors: dict[str, list[float]] = field(default_factory=dict)
    seconds_per_image: float = 0.0
    judge_seconds_per_image: float = 0.0

    def position_summary(self, errors: list[float]) -> dict:
        e = np.asarray(errors, dtype=float)
        e = e[np.isfinite(e)]
        if not len(e):
            return {"mean": None, "median": None, "p90": None, "within_target": Proportion(0, len(errors)).to_json()}
        return {
            "mean": float(e.mean()),
            "median": float(np.median(e)),
            "p90": float(np.quantile(e, 0.9)),
            "within_target": Proportion(int((e <= POSITION_TARGET).sum()), len(errors)).to_json(),
        }

    def to_json(self) -> dict:
        return {
            "domain": self.domain,
            "n": self.n,
            "seed": self.seed,
            "split": self.split,
            "energy": {k: v.to_json() for k, v in self.energy.items()},
            "judge": {k: v.to_json() for k, v in self.judge.items()},
            "position": {k: self.position_summary(v) for k, v in self.position_errors.items()},
            "judge_position": {k: self.position_summary(v) for k, v in self.judge_position_errors.items()},
            "seconds_per_image": self.seconds_per_image,
            "judge_seconds_per_image": self.judge_seconds_per_image,
        }

    def markdown_table(self) -> str:
        lines = [
            "| family | energy inference [95% CI] | target | judge [95% CI] |",
            "| --- | --- | --- | --- |",
        ]
        for fam, p in self.energy.items():
            j = self.judge.get(fam)
            mark = "✓" if p.value >= DISCRETE_TARGET else "✗"
            lines.append(f"| {fam} | {p.format()} | ≥ {DISCRETE_TARGET:.2f} {mark} | {j.format() if j else '–'} |")
        for fam, errs in self.position_errors.items():
            s = self.position_summary(errs)
            js = self.position_summary(self.judge_position_errors.get(fam, []))
            if s["mean"] is None:
                continue
            mark = "✓" if s["mean"] <= POSITION_TARGET else "✗"
            within = Proportion(s["within_target"]["successes"], s["within_target"]["trials"])
            judge_txt = f"mean error {js['mean']:.3f}" if js["mean"] is not None else "–"
            lines.append(
                f"| {fam} | mean error {s['mean']:.3f} (median {s['median']:.3f}, p90 {s['p90']:.3f}); "
                f"≤ {POSITION_TARGET} in {within.format()} | mean ≤ {POSITION_TARGET} {mark} | {judge_txt} |"
            )
        return "\n".join(lines)


def measure_inference(
    registry,
    domain: str,
    n: int = 64,
    seed: int = 12345,
    split: str = "train",
    device: str = "cpu",
    judge=None,
    batch: int = 32,
    **infer_kwargs,
) -> InferenceAccuracy:
    """Generate ``n`` labelled images, infer their concepts by energy, and score against the truth."""
    from conceptlang.data import generate

    dom = registry.domain(domain)
    images, truth = generate(domain, n, seed=seed, split=split)
    t0 = time.perf_counter()
    inferred = []
    for start in range(0, n, batch):
        inferred += infer_batch(images[start : start + batch], registry, domain, device=device, **infer_kwargs)
    seconds = (time.perf_counter() - t0) / max(n, 1)
    judged = None
    judge_seconds = 0.0
    if judge is not None:
        t1 = time.perf_counter()
        judged = judge.labels(images)
        judge_seconds = (time.perf_counter() - t1) / max(n, 1)
    energy: dict[str, Proportion] = {}
    judge_acc: dict[str, Proportion] = {}
    pos: dict[str, list[float]] = {}
    jpos: dict[str, list[float]] = {}
    for fam in dom.families:
        if fam.kind == "continuous":
            errs, jerrs = [], []
            for i in range(n):
                t = true_value(truth[i], fam)
                est = inferred[i].families[fam.name].value
                errs.append(float(np.hypot(*(np.subtract(est, t)))))
                if judged is not None:
                    jv = true_value(judged[i], fam)
                    jerrs.append(float(np.hypot(*(np.subtract(jv, t)))) if jv is not None else float("inf"))
            pos[fam.name] = errs
            if judged is not None:
                jpos[fam.name] = jerrs
            continue
        hits = sum(inferred[i].families[fam.name].value == true_value(truth[i], fam) for i in range(n))
        energy[fam.name] = Proportion(int(hits), n)
        if judged is not None:
            jh = sum(true_value(judged[i], fam) == true_value(truth[i], fam) for i in range(n))
            judge_acc[fam.name] = Proportion(int(jh), n)
    return InferenceAccuracy(domain, n, seed, split, energy, judge_acc, pos, jpos, seconds, judge_seconds)
