"""The records of an evaluation: one :class:`ExpressionResult` per expression, a
:class:`SuiteResult` per suite run, their JSON (what ``conceptlang eval -o`` writes) and the pooling
of several runs' files (``conceptlang eval-merge``); and the accuracy targets a result is held to.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

import numpy as np

from conceptlang.errors import ConceptLangError
from conceptlang.evaluation.stats import Proportion
from conceptlang.evaluation.suites import OPERATOR_CLASSES, Suite
from conceptlang.io import jsonable

# Judged accuracy targets (valid AND satisfying) per operator class (docs/experiments.md).
AND_TARGETS = {2: 0.90, 3: 0.85, 4: 0.80}
CLASS_TARGETS = {"single": 0.95, "not": 0.85, "or": 0.90}


def target_for(operator: str, n_concepts: int) -> float | None:
    """The accuracy target for this class of expression (None: no target stated)."""
    if operator == "and":
        return AND_TARGETS.get(n_concepts, 0.80 if n_concepts > 4 else None)
    return CLASS_TARGETS.get(operator)


@dataclass(frozen=True)
class BranchCoverage:
    text: str
    satisfied_valid: Proportion  # valid samples satisfying this disjunct / valid samples
    target: float  # 1 / (2k), k the branches one object can satisfy; 0 for one it cannot
    possible: bool = True  # False: no one object satisfies the disjunct (two values of an exclusive family)

    @property
    def meets(self) -> bool:
        if not self.possible:
            return True
        return self.satisfied_valid.trials > 0 and self.satisfied_valid.value >= self.target

    def to_json(self) -> dict:
        return {"disjunct": self.text, "coverage": self.satisfied_valid.to_json(), "target": self.target,
                "meets": self.meets, "possible": self.possible}

    @classmethod
    def from_json(cls, data: dict) -> "BranchCoverage":
        return cls(data["disjunct"], Proportion.from_json(data["coverage"]), float(data["target"]),
                   bool(data.get("possible", True)))


@dataclass
class ExpressionResult:
    name: str
    text: str
    operator: str
    n_concepts: int
    tags: tuple[str, ...]
    domain: str | None
    seed: int
    n: int
    valid: Proportion | None = None
    satisfied: Proportion | None = None  # judged labels satisfy the expression (validity ignored)
    accuracy: Proportion | None = None  # valid AND satisfying: the headline figure
    branches: list[BranchCoverage] = field(default_factory=list)
    drawn_branches: dict[str, int] | None = None  # from the sampler's DNF route, when it reports one
    sample_seconds: float = 0.0
    seconds: float = 0.0  # wall time: compile + sample + judge
    settings: dict = field(default_factory=dict)
    grid: str | None = None
    error: str | None = None
    per_sample: dict[str, list[bool]] = field(default_factory=dict)
    invalid_reasons: dict[str, int] = field(default_factory=dict)  # judge's reasons → count of invalid samples
    # Distribution figures (conceptlang.evaluation.distribution), when measured.
    distribution: Any = None
    # The uint8 (N, H, W, 3) samples, kept only when asked (figures); never written to JSON.
    images: np.ndarray | None = field(default=None, repr=False)
    labels: list[dict] | None = field(default=None, repr=False)  # the judge's labels of the samples; not in JSON

    @property
    def target(self) -> float | None:
        return target_for(self.operator, self.n_concepts)

    @property
    def meets_target(self) -> bool | None:
        t = self.target
        if t is None or self.accuracy is None:
            return None
        ok = self.accuracy.value >= t
        if self.branches:
            ok = ok and all(b.meets for b in self.branches)
        return ok

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "expression": self.text,
            "operator": self.operator,
            "n_concepts": self.n_concepts,
            "tags": list(self.tags),
            "domain": self.domain,
            "seed": self.seed,
            "n": self.n,
            "valid": self.valid.to_json() if self.valid else None,
            "satisfied": self.satisfied.to_json() if self.satisfied else None,
            "accuracy": self.accuracy.to_json() if self.accuracy else None,
            "target": self.target,
            "meets_target": self.meets_target,
            "branches": [b.to_json() for b in self.branches],
            "drawn_branches": self.drawn_branches,
            "sample_seconds": round(self.sample_seconds, 3),
            "seconds": round(self.seconds, 3),
            "settings": jsonable(self.settings),
            "grid": self.grid,
            "error": self.error,
            "invalid_reasons": self.invalid_reasons,
            "per_sample": self.per_sample,
            "distribution": self.distribution.to_json() if self.distribution is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> "ExpressionResult":
        """Inverse of :meth:`to_json` (target and meets_target are recomputed, not read)."""

        def prop(key: str) -> Proportion | None:
            return Proportion.from_json(data[key]) if data.get(key) else None

        dist = None
        if data.get("distribution"):
            from conceptlang.evaluation.distribution import DistributionMetrics

            dist = DistributionMetrics.from_json(data["distribution"])

        return cls(
            name=data["name"],
            text=data["expression"],
            operator=data["operator"],
            n_concepts=int(data["n_concepts"]),
            tags=tuple(data.get("tags", ())),
            domain=data.get("domain"),
            seed=int(data["seed"]),
            n=int(data["n"]),
            valid=prop("valid"),
            satisfied=prop("satisfied"),
            accuracy=prop("accuracy"),
            branches=[BranchCoverage.from_json(b) for b in data.get("branches", [])],
            drawn_branches=data.get("drawn_branches"),
            sample_seconds=float(data.get("sample_seconds", 0.0)),
            seconds=float(data.get("seconds", 0.0)),
            settings=dict(data.get("settings", {})),
            grid=data.get("grid"),
            error=data.get("error"),
            per_sample=dict(data.get("per_sample", {})),
            invalid_reasons=dict(data.get("invalid_reasons", {})),
            distribution=dist,
        )


@dataclass
class SuiteResult:
    results: list[ExpressionResult]
    n: int
    seed: int
    device: str
    seconds: float
    suite_path: str | None = None
    domain: str | None = None
    environment: dict = field(default_factory=dict)

    def summary(self, key: str) -> "OrderedDict[str, dict]":
        """Pooled accuracy (valid AND satisfying) grouped by ``operator``, ``n_concepts`` or ``tag``."""
        groups: "OrderedDict[str, list[ExpressionResult]]" = OrderedDict()
        order: Iterable[str]
        for r in self.results:
            if r.accuracy is None:
                continue
            if key == "operator":
                keys = [r.operator]
            elif key == "n_concepts":
                keys = [str(r.n_concepts)]
            elif key == "tag":
                keys = list(r.tags) or ["(untagged)"]
            else:
                raise ValueError(f"unknown summary key {key!r} (operator, n_concepts, tag)")
            for k in keys:
                groups.setdefault(k, []).append(r)
        if key == "operator":
            order = [k for k in OPERATOR_CLASSES if k in groups]
        elif key == "n_concepts":
            order = sorted(groups, key=int)
        else:
            order = list(groups)
        out: "OrderedDict[str, dict]" = OrderedDict()
        for k in order:
            rs = groups[k]
            pooled = Proportion(0, 0)
            for r in rs:
                pooled = pooled + r.accuracy
            targets = [r.meets_target for r in rs if r.meets_target is not None]
            out[k] = {
                "expressions": len(rs),
                "accuracy": pooled,
                "mean": float(np.mean([r.accuracy.value for r in rs])),
                "worst": min(rs, key=lambda r: r.accuracy.value),
                "meeting_target": (sum(targets), len(targets)),
            }
        return out

    def to_json(self) -> dict:
        def summ(key: str) -> dict:
            return {
                k: {
                    "expressions": v["expressions"],
                    "accuracy": v["accuracy"].to_json(),
                    "mean": v["mean"],
                    "worst": {"name": v["worst"].name, "accuracy": v["worst"].accuracy.to_json()},
                    "meeting_target": list(v["meeting_target"]),
                }
                for k, v in self.summary(key).items()
            }

        return {
            "suite": self.suite_path,
            "domain": self.domain,
            "n": self.n,
            "seed": self.seed,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "environment": self.environment,
            "results": [r.to_json() for r in self.results],
            "summary": {"operator": summ("operator"), "n_concepts": summ("n_concepts"), "tag": summ("tag")},
            "distribution": self.distribution_summary(),
        }

    def distribution_summary(self) -> dict | None:
        """Pooled distribution figures (:func:`conceptlang.evaluation.distribution.pooled`), None when none were measured."""
        if not any(r.distribution is not None for r in self.results):
            return None
        from conceptlang.evaluation.distribution import results_pooled

        return results_pooled(self.results)


class MergeError(ConceptLangError):
    """Result files that cannot be pooled into one table."""

    exit_code = 2


def suite_result_from_json(data: dict, where: str = "results") -> SuiteResult:
    """A :class:`SuiteResult` back from the JSON ``conceptlang eval -o`` writes."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise MergeError(f"{where}: not a 'conceptlang eval -o' file (no 'results' list)")
    try:
        results = [ExpressionResult.from_json(r) for r in data["results"]]
        return SuiteResult(
            results=results, n=int(data["n"]), seed=int(data["seed"]), device=str(data.get("device", "?")),
            seconds=float(data.get("seconds", 0.0)), suite_path=data.get("suite"), domain=data.get("domain"),
            environment=dict(data.get("environment") or {}),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise MergeError(f"{where}: malformed eval result ({type(err).__name__}: {err})") from None


def merge_suite_results(parts: Sequence[SuiteResult], order: Suite | None = None,
                        names: Sequence[str] | None = None) -> SuiteResult:
    """Pool the results of several ``conceptlang eval`` runs (e.g. a suite split across processes).

    All parts must share ``n`` and the base seed, so the pooled table is the one a single run of
    the union would print; an expression may appear only once. With ``order`` (a suite) the rows
    follow that suite's order and take its section tags, and every row must be in it; rows of
    the suite no part measured are simply absent. ``seconds`` is the sum of the parts' times.
    """
    if not parts:
        raise MergeError("nothing to merge: no result files given")
    names = list(names) if names is not None else [p.suite_path or f"part {i + 1}" for i, p in enumerate(parts)]
    first = parts[0]
    for nm, p in zip(names, parts):
        if p.n != first.n or p.seed != first.seed:
            raise MergeError(
                f"{nm}: n = {p.n}, base seed {p.seed} differ from {names[0]}'s n = {first.n}, base seed {first.seed}; "
                "only runs with the same n and seed pool into one table"
            )
    seen: dict[tuple[str | None, str], str] = {}
    rows: list[ExpressionResult] = []
    for nm, p in zip(names, parts):
        for r in p.results:
            key = (r.domain, r.text)
            if key in seen:
                raise MergeError(f"{nm}: {r.text!r} was already measured in {seen[key]}")
            seen[key] = nm
            rows.append(r)
    domains = {p.domain for p in parts}
    domain = domains.pop() if len(domains) == 1 else None
    if order is not None:
        index = {e.text: i for i, e in enumerate(order.entries)}
        tags = {e.text: e.tags for e in order.entries}
        stray = [r.text for r in rows if r.text not in index or (order.domain and r.domain != order.domain)]
        if stray:
            raise MergeError(f"{len(stray)} measured expression(s) are not in {order.path or 'the suite'}: {stray[0]!r}")
        rows = [replace(r, tags=tags[r.text]) for r in sorted(rows, key=lambda r: index[r.text])]
        domain = order.domain or domain
    devices = {p.device for p in parts}
    return SuiteResult(
        results=rows, n=first.n, seed=first.seed, device=devices.pop() if len(devices) == 1 else "mixed",
        seconds=float(sum(p.seconds for p in parts)),
        suite_path=order.path if order is not None else " + ".join(names),
        domain=domain, environment=dict(first.environment),
    )
