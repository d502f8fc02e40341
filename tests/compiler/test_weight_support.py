"""A positive weight changes how strongly a term acts, not which value combinations satisfy the
expression (docs/language.md, "Weights"): with the shipped models, an expression and the same
expression without its weights draw the same combinations of values in the same shares. Random
trees over scenes and faces concepts, with weights on concepts and on compounds."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conceptlang.compiler import compile
from conceptlang.errors import ConceptLangError
from conceptlang.models.registry import load_registry
from conceptlang.syntax import And, Not, Or, Weighted, parse_expr, unparse

SCENES = ["red", "cyan", "yellow", "circle", "square", "large", "small", "position(0.3, 0.3)", "position(0.6, 0.5)"]
FACES = ["male", "smiling", "young", "eyeglasses", "black_hair", "blond_hair", "bald"]
WEIGHTS = [0.5, 1.5, 2.0, 3.0]


def _weighted(leaves):
    concepts = st.sampled_from([parse_expr(t) for t in leaves])
    base = st.one_of(concepts, st.builds(Weighted, st.sampled_from(WEIGHTS), concepts))
    # a weight on compounds too: the plan's grouped branches and weighted conjunctions
    return st.recursive(base, lambda kids: st.one_of(
        kids.map(Not), st.lists(kids, min_size=2, max_size=3).map(tuple).map(And),
        st.lists(kids, min_size=2, max_size=3).map(tuple).map(Or),
        st.builds(Weighted, st.sampled_from(WEIGHTS), kids)), max_leaves=6)


def _unweighted(e):
    if isinstance(e, Weighted):
        return _unweighted(e.expr)
    if isinstance(e, Not):
        return Not(_unweighted(e.expr))
    if isinstance(e, (And, Or)):
        return type(e)(tuple(_unweighted(t) for t in e.terms))
    return e


def _combinations(g) -> dict[tuple, float]:
    """Each disjunct's values (its fullest positively weighted leaf's condition) → its share."""
    out: dict[tuple, float] = {}
    for d in g.disjuncts or []:
        full = max((leaf.condition for leaf, c in zip(g.leaves, d.coefs) if c > 0), key=len, default={})
        key = tuple(sorted((f, repr(v)) for f, v in full.items()))
        out[key] = out.get(key, 0.0) + d.share
    return out


@pytest.fixture(scope="module")
def shipped():
    return load_registry()


def _compiled(text, reg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return compile(text, reg)
        except ConceptLangError as e:
            return type(e).__name__


def _check(expr, reg):
    weighted, plain = _compiled(unparse(expr), reg), _compiled(unparse(_unweighted(expr)), reg)
    if isinstance(plain, str):  # refused without weights (unsatisfiable, …): no combinations to compare
        return
    assert not isinstance(weighted, str), f"{unparse(expr)} is refused, its unweighted form is not"
    got, want = _combinations(weighted), _combinations(plain)
    assert got.keys() == want.keys(), unparse(expr)
    assert all(abs(got[k] - want[k]) < 0.02 for k in got), unparse(expr)


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(expr=_weighted(SCENES))
@example(expr=parse_expr("(small | cyan) & 2 * (red & circle)"))
@example(expr=parse_expr("2 * (2 * (circle | ~yellow & red) & cyan)"))
@example(expr=parse_expr("2 * (~(cyan | yellow & position(0.3, 0.3)) & position(0.6, 0.5) & circle)"))
@example(expr=parse_expr("~(position(0.6, 0.5) | 0.5 * position(0.6, 0.5))"))  # one place negated twice
def test_scenes_weights_keep_the_drawn_combinations(shipped, expr):
    _check(expr, shipped)


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(expr=_weighted(FACES))
@example(expr=parse_expr("3 * (blond_hair & 2 * eyeglasses | black_hair)"))
def test_faces_weights_keep_the_drawn_combinations(shipped, expr):
    _check(expr, shipped)
