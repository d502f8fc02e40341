"""Compositional accuracy of expressions: sample → judge → valid AND satisfying.

For every expression the evaluator samples ``n`` images from the compiled energy graph with a fixed
seed, runs the domain's judge, and counts a sample as a success when the judge calls it valid
*and* its judged labels satisfy the expression's boolean semantics
(:func:`conceptlang.syntax.evaluate`). For a top-level disjunction it also reports each
disjunct's coverage: the fraction of valid samples that satisfy that disjunct, against the target
of at least half the fair share, 1/(2k) for k branches (docs/design.md, "OR shares").

Seeds are derived from the base seed and the expression text (not its position in the suite), so
adding an entry to a suite does not change the numbers of the others.
"""

from __future__ import annotations

import re
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from conceptlang.errors import ConceptLangError
from conceptlang.evaluation.stats import Proportion
from conceptlang.evaluation.suites import Suite, SuiteEntry, operator_class
from conceptlang.io import jsonable
from conceptlang.syntax.ast import Expr, Or, Weighted

# Judged accuracy targets (valid AND satisfying) per operator class (docs/experiments.md).
AND_TARGETS = {2: 0.90, 3: 0.85, 4: 0.80}
CLASS_TARGETS = {"single": 0.95, "not": 0.85, "or": 0.90}


def target_for(operator: str, n_concepts: int) -> float | None:
    """The accuracy target for this class of expression (None: no target stated)."""
    if operator == "and":
        return AND_TARGETS.get(n_concepts, 0.80 if n_concepts > 4 else None)
    return CLASS_TARGETS.get(operator)


def seed_for(text: str, base_seed: int, multiplier: int = 1_000_003, prefix: str = "") -> int:
    """A per-expression seed that depends only on the base seed and the expression text (``prefix``
    and ``multiplier`` make other streams, e.g. reference draws, apart from the sample seeds)."""
    return (int(base_seed) * multiplier + zlib.crc32((prefix + text.strip()).encode("utf-8"))) % (2**31 - 1)


def slug(text: str, max_len: int = 60) -> str:
    """A file-name-safe rendering of an expression (``(male & smiling) | ~black_hair`` → ``male_and_smiling_or_not_black_hair``)."""
    s = text.replace("&", " and ").replace("|", " or ").replace("~", " not ")
    s = re.sub(r"[^A-Za-z0-9.]+", "_", s).strip("_").replace(".", "-")
    s = s[:max_len].rstrip("_")
    return s or "expr"


def top_level_disjuncts(expr: Expr) -> list[Expr]:
    """The disjuncts of a top-level OR (nested ORs flattened), or [] when the expression is no OR."""
    e = expr
    while isinstance(e, Weighted):
        e = e.expr
    if not isinstance(e, Or):
        return []
    out: list[Expr] = []
    for t in e.terms:
        sub = top_level_disjuncts(t)
        out.extend(sub if sub else [t])
    return out


@dataclass(frozen=True)
class BranchCoverage:
    text: str
    satisfied_valid: Proportion  # valid samples satisfying this disjunct / valid samples
    target: float  # 1 / (2k)

    @property
    def meets(self) -> bool:
        return self.satisfied_valid.trials > 0 and self.satisfied_valid.value >= self.target

    def to_json(self) -> dict:
        return {"disjunct": self.text, "coverage": self.satisfied_valid.to_json(), "target": self.target, "meets": self.meets}

    @classmethod
    def from_json(cls, data: dict) -> "BranchCoverage":
        return cls(data["disjunct"], Proportion.from_json(data["coverage"]), float(data["target"]))


def branch_coverage(disjuncts: Sequence[Expr], labels: Sequence[dict], valid: np.ndarray) -> list[BranchCoverage]:
    """Per-disjunct coverage: of the valid samples, the fraction satisfying each disjunct.

    Disjuncts may overlap, so the fractions can sum to more than one.
    """
    from conceptlang.syntax import evaluate, unparse

    k = len(disjuncts)
    valid_idx = [i for i in range(len(labels)) if bool(valid[i])]
    out = []
    for d in disjuncts:
        hits = sum(1 for i in valid_idx if evaluate(d, labels[i]))
        out.append(BranchCoverage(unparse(d), Proportion(hits, len(valid_idx)), 1.0 / (2 * k)))
    return out


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


def expected_objects(expr: Expr, domain: str | None) -> int | tuple[int, ...] | None:
    """How many objects a valid sample of ``expr`` must show (None: a domain without object
    counts, faces). Scenes: one, or one per distinct position of a conjunction (an OR whose
    branches differ allows each branch's count); :func:`conceptlang.syntax.objects.expected_objects`.
    """
    if domain != "scenes":
        return None
    from conceptlang.syntax.objects import expected_objects as counted

    return counted(expr)


def _reason_key(reason: str) -> str:
    # "object 0 colour (12, 200, 30) is far from the palette" → "object # colour is far from the palette"
    return re.sub(r"\d+(\.\d+)?", "#", re.sub(r"\s*\([^)]*\)", "", reason)).strip()


def judge_samples(
    expr: Expr, images: np.ndarray, judge, domain: str | None = None
) -> tuple[np.ndarray, list[dict], np.ndarray, dict[str, int]]:
    """Run the judge on uint8 (N, H, W, 3) images → (valid (N,), labels, satisfied (N,), invalid reasons)."""
    from conceptlang.syntax import evaluate

    k = expected_objects(expr, domain)
    valid = np.asarray(judge.valid(images) if k is None else judge.valid(images, n_objects=k), dtype=bool)
    labels = judge.labels(images)
    if valid.shape != (len(images),) or len(labels) != len(images):
        raise ConceptLangError(
            f"the judge returned {valid.shape} validity flags and {len(labels)} label sets for {len(images)} images"
        )
    satisfied = np.array([bool(evaluate(expr, lab)) for lab in labels], dtype=bool)
    reasons: dict[str, int] = {}
    bad = np.flatnonzero(~valid)
    if len(bad) and hasattr(judge, "reasons"):
        per = judge.reasons(images[bad]) if k is None else judge.reasons(images[bad], n_objects=k)
        for rs in per:
            for key in {_reason_key(r) for r in rs} or {"(no reason given)"}:
                reasons[key] = reasons.get(key, 0) + 1
    return valid, labels, satisfied, dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


def score_samples(
    expr: Expr, images: np.ndarray, judge, result: ExpressionResult
) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``result``'s proportions from the judge's verdict on ``images``; returns (valid, satisfied)."""
    valid, labels, satisfied, reasons = judge_samples(expr, images, judge, result.domain)
    result.invalid_reasons = reasons
    result.labels = labels
    ok = valid & satisfied
    n = len(images)
    result.valid = Proportion(int(valid.sum()), n)
    result.satisfied = Proportion(int(satisfied.sum()), n)
    result.accuracy = Proportion(int(ok.sum()), n)
    disjuncts = top_level_disjuncts(expr)
    if disjuncts:
        result.branches = branch_coverage(disjuncts, labels, valid)
    result.per_sample = {"valid": valid.tolist(), "satisfied": satisfied.tolist()}
    return valid, satisfied


def _drawn_branches(sample_result, expr: Expr) -> dict[str, int] | None:
    branches = getattr(sample_result, "branches", None)
    if branches is None:
        return None
    try:
        values = list(np.asarray(branches.cpu() if hasattr(branches, "cpu") else branches).reshape(-1))
    except (TypeError, ValueError):
        return None
    counts: dict[str, int] = {}
    for v in values:
        key = str(v.item() if hasattr(v, "item") else v)
        counts[key] = counts.get(key, 0) + 1
    return counts


class JudgeCache:
    """One judge per domain, loaded on first use."""

    def __init__(self, loader: Callable[[str], Any] | None = None):
        self._loader = loader
        self._judges: dict[str, Any] = {}

    def __call__(self, domain: str):
        if domain not in self._judges:
            loader = self._loader
            if loader is None:
                from conceptlang.judge.judge import load_judge

                loader = load_judge
            self._judges[domain] = loader(domain)
        return self._judges[domain]


def evaluate_entry(
    entry: SuiteEntry,
    registry,
    judges: JudgeCache,
    n: int = 256,
    base_seed: int = 0,
    device: str = "auto",
    grid_dir: str | Path | None = None,
    grid_samples: int = 64,
    sample_kwargs: dict | None = None,
    keep_going: bool = True,
    keep_images: bool = False,
    distribution: bool = False,
) -> ExpressionResult:
    """Sample, judge and score one suite entry. With ``keep_going`` a failure is recorded, not raised.

    With ``distribution`` the samples are also compared with generator images satisfying the
    expression (:func:`conceptlang.evaluation.distribution.distribution_metrics`).
    """
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.data import to_uint8
    from conceptlang.evaluation.grids import framed_grid
    from conceptlang.io import save_png
    from conceptlang.sampling import sample

    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    seed = seed_for(entry.text, base_seed)
    result = ExpressionResult(
        name=entry.name,
        text=entry.text,
        operator=entry.operator,
        n_concepts=entry.n_concepts,
        tags=entry.tags,
        domain=None,
        seed=seed,
        n=n,
    )
    t0 = time.perf_counter()
    try:
        graph = compile_expr(entry.expr, registry)
        result.domain = getattr(graph, "domain", None)
        t1 = time.perf_counter()
        sampled = sample(graph, n, seed=seed, device=device, **(sample_kwargs or {}))
        result.sample_seconds = time.perf_counter() - t1
        result.settings = dict(getattr(sampled, "settings", {}) or {})
        result.drawn_branches = _drawn_branches(sampled, entry.expr)
        images = to_uint8(sampled.images)  # (N, H, W, 3) uint8
        judge = judges(result.domain)
        valid, satisfied = score_samples(entry.expr, images, judge, result)
        if distribution:
            from conceptlang.evaluation.distribution import distribution_metrics, reference_seed

            result.distribution = distribution_metrics(
                entry.expr, result.domain, images, result.labels, valid & satisfied, judge,
                reference_seed(entry.text, base_seed), n_objects=expected_objects(entry.expr, result.domain))
        if keep_images:
            result.images = images
        if grid_dir is not None:
            path = Path(grid_dir) / f"{slug(entry.name)}.png"
            m = min(grid_samples, n)
            save_png(path, framed_grid(images[:m], satisfied[:m], valid[:m], ncols=min(8, m)))
            result.grid = str(path)
    except ConceptLangError as err:
        if not keep_going:
            raise
        result.error = f"{type(err).__name__}: {err}"
    result.seconds = time.perf_counter() - t0
    return result


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
            from conceptlang.evaluation.suites import OPERATOR_CLASSES

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


def environment_info(device: str = "auto") -> dict:
    """Device and library versions, recorded with every table."""
    import platform

    import torch

    resolved = device
    if device == "auto":
        resolved = "cuda" if torch.cuda.is_available() else "cpu"
    info = {
        "device": resolved,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }
    if resolved.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def evaluate_suite(
    suite: Suite,
    registry,
    n: int = 256,
    seed: int = 0,
    device: str = "auto",
    grid_dir: str | Path | None = None,
    judges: JudgeCache | None = None,
    sample_kwargs: dict | None = None,
    progress: Callable[[ExpressionResult], None] | None = None,
    keep_going: bool = True,
    keep_images: bool = False,
    distribution: bool = False,
) -> SuiteResult:
    judges = judges or JudgeCache()
    t0 = time.perf_counter()
    results = []
    for entry in suite.entries:
        r = evaluate_entry(
            entry, registry, judges, n=n, base_seed=seed, device=device, grid_dir=grid_dir,
            sample_kwargs=sample_kwargs, keep_going=keep_going, keep_images=keep_images,
            distribution=distribution,
        )
        results.append(r)
        if progress is not None:
            progress(r)
    return SuiteResult(
        results=results,
        n=n,
        seed=seed,
        device=device,
        seconds=time.perf_counter() - t0,
        suite_path=suite.path,
        domain=suite.domain,
        environment=environment_info(device),
    )


# ----------------------------------------------------------------------------------------- Markdown


def md_code(text: str) -> str:
    """Inline code for a Markdown table cell: a bare '|' would end the cell, so it is escaped."""
    return "`" + text.replace("|", "\\|") + "`"


def _fmt_target(r: ExpressionResult) -> str:
    t = r.target
    if t is None:
        return "–"
    mark = "✓" if r.meets_target else "✗"
    return f"≥ {t:.2f} {mark}"


def _fmt_branches(r: ExpressionResult) -> str:
    if not r.branches:
        return ""
    def one(b: BranchCoverage) -> str:
        if not b.satisfied_valid.trials:
            return f"{md_code(b.text)} n/a"
        return f"{md_code(b.text)} {b.satisfied_valid.value:.2f}" + ("" if b.meets else " ✗")

    return "; ".join(one(b) for b in r.branches)


def expression_table(results: Sequence[ExpressionResult], grid_link: Callable[[str], str] | None = None) -> str:
    lines = [
        "| expression | class | k | tags | valid | accuracy [95% CI] | target | OR branch coverage | s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        text = md_code(r.text)
        if r.grid and grid_link:
            text = f"[{text}]({grid_link(r.grid)})"
        if r.error:
            lines.append(f"| {text} | {r.operator} | {r.n_concepts} | {', '.join(r.tags)} | – | failed: {r.error} | | | {r.seconds:.1f} |")
            continue
        lines.append(
            f"| {text} | {r.operator} | {r.n_concepts} | {', '.join(r.tags)} | {r.valid.value:.2f} "
            f"| {r.accuracy.format()} | {_fmt_target(r)} | {_fmt_branches(r)} | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def summary_table(result: SuiteResult, key: str, title: str) -> str:
    lines = [
        f"| {title} | expressions | pooled accuracy [95% CI] | mean | worst | meeting target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for k, v in result.summary(key).items():
        met, total = v["meeting_target"]
        w = v["worst"]
        lines.append(
            f"| {k} | {v['expressions']} | {v['accuracy'].format()} | {v['mean']:.2f} "
            f"| {md_code(w.text)} {w.accuracy.value:.2f} | {f'{met}/{total}' if total else '–'} |"
        )
    return "\n".join(lines)


def invalid_reasons_table(results: Sequence[ExpressionResult], top: int = 8) -> str:
    """Why samples were judged invalid, pooled over expressions (an invalid sample may have several reasons)."""
    pooled: dict[str, int] = {}
    n_invalid = sum(r.valid.trials - r.valid.successes for r in results if r.valid is not None)
    for r in results:
        for k, v in r.invalid_reasons.items():
            pooled[k] = pooled.get(k, 0) + v
    if not pooled:
        return "No sample was judged invalid." if n_invalid == 0 else ""
    lines = [f"| reason a sample was invalid ({n_invalid} invalid samples) | samples |", "| --- | --- |"]
    for k, v in sorted(pooled.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {k} | {v} |")
    return "\n".join(lines)


def suite_markdown(result: SuiteResult, title: str | None = None, grid_link: Callable[[str], str] | None = None) -> str:
    env = result.environment
    head = title or f"Evaluation of {result.suite_path or 'suite'}"
    parts = [
        f"## {head}",
        "",
        f"{len(result.results)} expressions, n = {result.n} samples each, base seed {result.seed}, "
        f"device {env.get('device', result.device)}, torch {env.get('torch', '?')}, {result.seconds:.0f} s in all. "
        "Accuracy = fraction of samples the judge calls valid *and* whose judged labels satisfy the expression; "
        "95% Wilson intervals. OR branch coverage = fraction of valid samples satisfying each disjunct "
        "(target ≥ 1/(2k)).",
        "",
        expression_table(result.results, grid_link),
        "",
        "By operator:",
        "",
        summary_table(result, "operator", "operator"),
        "",
        "By number of concepts:",
        "",
        summary_table(result, "n_concepts", "concepts"),
    ]
    if any(r.tags for r in result.results):
        parts += ["", "By tag:", "", summary_table(result, "tag", "tag")]
    reasons = invalid_reasons_table(result.results)
    if reasons:
        parts += ["", reasons]
    summary = result.distribution_summary()
    if summary is not None:
        from conceptlang.evaluation import distribution as D

        parts += ["", "Distribution of the samples:", "", D.TABLE_NOTE, "", D.expression_table(result.results), "",
                  D.summary_table([(result.domain or "all", summary)])]
    return "\n".join(parts) + "\n"


__all__ = [
    "BranchCoverage",
    "ExpressionResult",
    "JudgeCache",
    "MergeError",
    "SuiteResult",
    "branch_coverage",
    "evaluate_entry",
    "evaluate_suite",
    "merge_suite_results",
    "operator_class",
    "seed_for",
    "suite_markdown",
    "suite_result_from_json",
    "target_for",
]
