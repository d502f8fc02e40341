"""Hypothesis strategies for ConceptLang, so users can property-test their own expressions.

    from hypothesis import given
    from conceptlang.testing import expressions, labels_for, truth_assignments
    from conceptlang.syntax import evaluate, to_nnf

    @given(expressions(["smiling", "male", "black_hair"]))
    def test_nnf_keeps_meaning(expr):
        for labels in truth_assignments(expr):
            assert evaluate(to_nnf(expr), labels) == evaluate(expr, labels)

Every AST these strategies draw has a text form, and ``parse(unparse(tree)) == tree`` holds
for all of them (chains have at least two terms, names are identifiers, numbers are finite).
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Iterator, Sequence, Union

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from conceptlang.syntax.ast import And, Concept, Definition, Expr, Not, Or, Program, Weighted
from conceptlang.syntax.parser import parse_expr
from conceptlang.syntax.passes import concepts_of

NAME_PATTERN = r"[a-z][a-z0-9_]{0,7}"
DEFINITION_NAME_PATTERN = r"[A-Z][A-Za-z0-9_]{0,7}"

Leaves = Union[None, Sequence[str | Concept], SearchStrategy]


def concept_names() -> SearchStrategy[str]:
    """Lower-case identifiers such as ``smiling`` or ``x_2``."""
    return st.from_regex(NAME_PATTERN, fullmatch=True)


def definition_names() -> SearchStrategy[str]:
    """Capitalised identifiers (``Happy``): never equal to a name from :func:`concept_names`."""
    return st.from_regex(DEFINITION_NAME_PATTERN, fullmatch=True)


def numbers(allow_negative: bool = True, max_magnitude: float | None = None) -> SearchStrategy[float]:
    """Finite floats: small integers (as floats), typical weights and arbitrary finite values,
    ``-0.0`` and subnormals included (the printer must round-trip them all exactly).

    ``max_magnitude`` bounds ``abs(x)`` (e.g. to keep energies finite in numeric tests)."""
    low = None if max_magnitude is None else -max_magnitude
    any_float = st.floats(min_value=low, max_value=max_magnitude, allow_nan=False, allow_infinity=False)
    small = st.integers(min_value=-10, max_value=10).map(float)
    strategy = st.one_of(small, st.sampled_from([0.5, 2.5, 0.1, 1e-3, -1.5]), any_float)
    if max_magnitude is not None:
        strategy = strategy.filter(lambda x: abs(x) <= max_magnitude)
    return strategy if allow_negative else strategy.filter(lambda x: x >= 0)


def concepts(parameterised: bool = True, qualified: bool = True) -> SearchStrategy[Concept]:
    """Concept leaves: bare (``red``), qualified (``color.red``), parameterised
    (``position(0.25, 0.5)``, ``f()``, ``g.h(1, -2.5, 3)``)."""
    options = [st.builds(Concept, concept_names())]
    if qualified:
        options.append(st.builds(Concept, concept_names(), concept_names()))
    if parameterised:
        args = st.lists(numbers(), max_size=3).map(tuple)
        family = st.none() | concept_names() if qualified else st.none()
        options.append(st.builds(Concept, concept_names(), family, args))
    return st.one_of(options)


def _as_concept(leaf: str | Concept) -> Concept:
    if isinstance(leaf, Concept):
        return leaf
    node = parse_expr(leaf)
    if not isinstance(node, Concept):
        raise ValueError(f"{leaf!r} is not a single concept")
    return node


def _leaf_strategy(leaves: Leaves) -> SearchStrategy[Concept]:
    if leaves is None:
        return concepts()
    if isinstance(leaves, SearchStrategy):
        return leaves
    pool = [_as_concept(leaf) for leaf in leaves]
    if not pool:
        raise ValueError("expressions() needs at least one leaf")
    return st.sampled_from(pool)


def expressions(
    leaves: Leaves = None,
    *,
    max_leaves: int = 12,
    weights: bool = True,
    negative_weights: bool = True,
    max_terms: int = 4,
    max_weight: float | None = None,
) -> SearchStrategy[Expr]:
    """Expression trees over ``leaves``.

    ``leaves``: None (any concept from :func:`concepts`), a list of concept texts
    (``["smiling", "color.red", "position(0.5, 0.5)"]``) or Concept objects, or a strategy of
    Concepts. ``max_leaves`` bounds the tree size; ``max_terms`` the length of each ``&``/``|``
    chain (at least 2). Weights are drawn from :func:`numbers` when ``weights`` is true
    (``abs(w) <= max_weight`` if given; ``negative_weights=False`` keeps them ``>= 0``).
    """
    base = _leaf_strategy(leaves)

    def extend(children: SearchStrategy[Expr]) -> SearchStrategy[Expr]:
        chain = st.lists(children, min_size=2, max_size=max_terms).map(tuple)
        options = [children.map(Not), chain.map(And), chain.map(Or)]
        if weights:
            weight = numbers(allow_negative=negative_weights, max_magnitude=max_weight)
            options.append(st.builds(Weighted, weight, children))
        return st.one_of(options)

    return st.recursive(base, extend, max_leaves=max_leaves)


@st.composite
def _programs(draw: Any, leaves: Leaves, max_definitions: int, max_leaves: int, weights: bool, negative_weights: bool) -> Program:
    count = draw(st.integers(min_value=0, max_value=max_definitions))
    names = draw(st.lists(definition_names(), min_size=count, max_size=count, unique=True))
    taken = set(names)
    # A leaf spelled like a definition would be a reference to it; keep references deliberate.
    base = _leaf_strategy(leaves).filter(lambda c: not (c.family is None and c.name in taken))
    definitions: list[Definition] = []
    for i, name in enumerate(names):
        refs = [Concept(n) for n in names[:i]]  # only earlier definitions: no cycles
        pool = st.one_of(base, st.sampled_from(refs)) if refs else base
        expr = draw(expressions(pool, max_leaves=max_leaves, weights=weights, negative_weights=negative_weights))
        definitions.append(Definition(name, expr))
    pool = st.one_of(base, st.sampled_from([Concept(n) for n in names])) if names else base
    body = draw(expressions(pool, max_leaves=max_leaves, weights=weights, negative_weights=negative_weights))
    return Program(tuple(definitions), body)


def programs(
    leaves: Leaves = None,
    *,
    max_definitions: int = 3,
    max_leaves: int = 8,
    weights: bool = True,
    negative_weights: bool = True,
) -> SearchStrategy[Program]:
    """Programs: up to ``max_definitions`` definitions (capitalised names, each using earlier
    ones), then a body that may use any of them. Always valid: no cycles, no duplicates."""
    return _programs(leaves, max_definitions, max_leaves, weights, negative_weights)


# --------------------------------------------------------------------------------------------
# Truth assignments


def _split(concepts: Iterable[Concept]) -> tuple[list[str], list[Concept]]:
    keys: set[str] = set()
    positions: set[Concept] = set()
    for c in concepts:
        if c.args is None:
            keys.add(c.qualified)
        elif c.name == "position" and c.family in (None, "position") and len(c.args) == 2:
            positions.add(c)
        else:
            raise ValueError(f"no labels can make the parameterised concept {c.qualified}{c.args} true or false")
    return sorted(keys), sorted(positions, key=lambda c: c.args)


def _concepts(source: Expr | Program | Iterable[str | Concept]) -> list[Concept]:
    if isinstance(source, (Program, Concept, Not, And, Or, Weighted)):
        return list(concepts_of(source))
    return [_as_concept(c) for c in source]


def _labels(keys: list[str], bits: Sequence[bool], positions: list[Concept], placed: Sequence[bool], extra: list) -> dict:
    labels: dict[str, Any] = dict(zip(keys, bits))
    objects = [{"x": c.args[0], "y": c.args[1]} for c, here in zip(positions, placed) if here]
    labels["objects"] = objects + extra
    return labels


def labels_for(source: Expr | Program | Iterable[str | Concept]) -> SearchStrategy[dict]:
    """Label dicts (the project's format) deciding every concept of ``source``.

    Each plain concept gets an independent True/False under the name it is written with;
    for each ``position(x, y)`` an object is placed exactly there or not, and up to two more
    objects are scattered at random.
    """
    keys, positions = _split(_concepts(source))
    coords = st.floats(min_value=0.0, max_value=1.0)
    return st.builds(
        _labels,
        st.just(keys),
        st.lists(st.booleans(), min_size=len(keys), max_size=len(keys)),
        st.just(positions),
        st.lists(st.booleans(), min_size=len(positions), max_size=len(positions)),
        st.lists(st.fixed_dictionaries({"x": coords, "y": coords}), max_size=2),
    )


def truth_assignments(source: Expr | Program | Iterable[str | Concept], max_variables: int = 16) -> Iterator[dict]:
    """Every label dict over the concepts of ``source`` (a brute-force truth table).

    2**n rows for n distinct concepts; positions are decided by placing an object exactly at
    them or not. Raises ValueError above ``max_variables`` concepts.
    """
    keys, positions = _split(_concepts(source))
    n = len(keys) + len(positions)
    if n > max_variables:
        raise ValueError(f"{n} concepts give 2**{n} rows; raise max_variables if you mean it")
    for bits in itertools.product((False, True), repeat=n):
        yield _labels(keys, bits[: len(keys)], positions, bits[len(keys) :], [])
