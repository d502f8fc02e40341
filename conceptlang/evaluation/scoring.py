"""Scoring samples: the judge's verdict on each sample (valid, and do its judged labels satisfy
the expression's boolean semantics, :func:`conceptlang.syntax.evaluate`), pooled into an
:class:`~conceptlang.evaluation.results.ExpressionResult`'s proportions. For a top-level
disjunction each disjunct's coverage is measured too: the fraction of valid samples that satisfy
it, against the target of at least half the fair share, 1/(2k) for k branches one object can
satisfy (docs/design.md, "OR shares"); a branch none can (``purple & yellow``) has no target.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from conceptlang.errors import ConceptLangError
from conceptlang.evaluation.results import BranchCoverage, ExpressionResult
from conceptlang.evaluation.stats import Proportion
from conceptlang.syntax.ast import Expr, Or, Weighted


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


def branch_coverage(disjuncts: Sequence[Expr], labels: Sequence[dict], valid: np.ndarray,
                    possible: Sequence[bool] | None = None) -> list[BranchCoverage]:
    """Per-disjunct coverage: of the valid samples, the fraction satisfying each disjunct.

    Disjuncts may overlap, so the fractions can sum to more than one. ``possible`` marks the
    disjuncts one object can satisfy (:func:`possible_disjuncts`); the others have no target and
    the fair share is taken over the rest.
    """
    from conceptlang.syntax import evaluate, unparse

    possible = [True] * len(disjuncts) if possible is None else list(possible)
    k = max(1, sum(possible))
    valid_idx = [i for i in range(len(labels)) if bool(valid[i])]
    out = []
    for d, ok in zip(disjuncts, possible):
        hits = sum(1 for i in valid_idx if evaluate(d, labels[i]))
        out.append(BranchCoverage(unparse(d), Proportion(hits, len(valid_idx)), 1.0 / (2 * k) if ok else 0.0, ok))
    return out


def possible_disjuncts(disjuncts: Sequence[Expr], registry, domain: str | None) -> list[bool]:
    """For each disjunct, whether some object can satisfy it under the domain's exclusive families
    (``purple & yellow`` cannot); True where the registry cannot say."""
    from conceptlang.compiler.checks import satisfiable
    from conceptlang.compiler.resolve import resolve_names

    out = []
    for d in disjuncts:
        try:
            refs, dom = resolve_names(d, registry, domain=domain)
            out.append(satisfiable(d, refs, registry, dom) is not False)
        except ConceptLangError:
            out.append(True)
    return out


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
    expr: Expr, images: np.ndarray, judge, result: ExpressionResult, registry=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``result``'s proportions from the judge's verdict on ``images``; returns (valid, satisfied).
    ``registry``: the models the expression was compiled against, to tell which OR branches one
    object can satisfy (without it every branch counts as possible)."""
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
        possible = None if registry is None else possible_disjuncts(disjuncts, registry, result.domain)
        result.branches = branch_coverage(disjuncts, labels, valid, possible)
    result.per_sample = {"valid": valid.tolist(), "satisfied": satisfied.tolist()}
    return valid, satisfied
