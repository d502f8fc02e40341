"""How many objects an expression asks one image to show.

A conjunction of k distinct values of a placing concept (``position(0.2, 0.25) &
position(0.8, 0.75)``) describes k objects, one at each place: one object has one centre. Every
other concept describes the object(s) without adding one, and so does anything negated (``~X``,
a negative weight): ``circle & ~position(0.5, 0.5)`` is one circle that is not in the middle.

An OR's branches are alternatives, so an expression may allow several counts:
``position(0.2, 0.2) | (position(0.2, 0.2) & position(0.8, 0.8))`` shows one object or two.
:func:`object_counts` gives every count some branch of the expression's disjunctive normal form
asks for (at least one object each); a conjunction without ORs has exactly one.

Which concepts place objects is the caller's choice, through ``key(concept)``: a ``(group,
value)`` pair for a placing concept, None for the rest. Two values of one group are two objects;
the judge counts ``position(x, y)`` by name (:func:`position_key`), the compiler counts the
distinct values of each continuous family it resolved.
"""

from __future__ import annotations

from typing import Callable, Hashable

from conceptlang.syntax.ast import And, Concept, Expr, Not, Or, Program, Weighted
from conceptlang.syntax.walk import postorder

Key = Callable[[Concept], "tuple[Hashable, Hashable] | None"]

# Alternatives (sets of placed values) tracked per node. Past this many, alternatives of equal
# count are merged, so the counts of a huge OR stay exact while a product of ORs is approximate.
MAX_ALTERNATIVES = 256


def position_key(concept: Concept) -> tuple[str, tuple[float, ...]] | None:
    """The judge's placing concepts: ``position(x, y)`` (bare or ``position.position``), by its arguments."""
    if concept.name == "position" and concept.family in (None, "position") and concept.args is not None:
        return ("position", tuple(float(a) for a in concept.args))
    return None


def _count(alt: frozenset) -> int:
    per_group: dict[Hashable, int] = {}
    for group, _ in alt:
        per_group[group] = per_group.get(group, 0) + 1
    return max(per_group.values(), default=1)


def _bounded(alts: set[frozenset]) -> set[frozenset]:
    if len(alts) <= MAX_ALTERNATIVES:
        return alts
    by_count: dict[int, frozenset] = {}
    for a in sorted(alts, key=lambda a: (len(a), sorted(map(repr, a)))):
        by_count.setdefault(_count(a), a)
    return set(by_count.values())


def object_counts(expr: Expr | Program, key: Key = position_key) -> tuple[int, ...]:
    """The sorted distinct object counts the expression's branches ask for (each ≥ 1)."""
    if isinstance(expr, Program):
        from conceptlang.syntax.passes import expand_definitions

        expr = expand_definitions(expr)
    empty: set[frozenset] = {frozenset()}
    alts: dict[int, set[frozenset]] = {}
    for node in postorder(expr):
        if isinstance(node, Concept):
            k = key(node)
            out = {frozenset([k])} if k is not None else empty
        elif isinstance(node, Not):
            out = empty
        elif isinstance(node, Weighted):
            out = alts[id(node.expr)] if node.weight > 0 else empty
        elif isinstance(node, And):
            single = [next(iter(alts[id(t)])) for t in node.terms if len(alts[id(t)]) == 1]
            out = {frozenset().union(*single)}  # the terms without alternatives, in one union
            for t in node.terms:
                if len(alts[id(t)]) > 1:
                    out = _bounded({a | b for a in out for b in alts[id(t)]})
        elif isinstance(node, Or):
            out = set()
            for t in node.terms:
                out |= alts[id(t)]
            out = _bounded(out)
        else:  # a Definition or Program inside an expression is not a ConceptLang expression
            raise TypeError(f"not a ConceptLang expression node: {type(node).__name__}")
        alts[id(node)] = out
    return tuple(sorted({_count(a) for a in alts[id(expr)]}))


def expected_objects(expr: Expr | Program, key: Key = position_key) -> int | tuple[int, ...]:
    """The object count a sample of ``expr`` must show: an int when every branch agrees (always,
    without ORs), else the tuple of the counts its branches allow."""
    counts = object_counts(expr, key)
    return counts[0] if len(counts) == 1 else counts
