"""Data-weighted ORs: p(x | A ∨ B) as the mixture over the value combinations that make it true.

Drawing the branches of ``A | B`` half and half samples p(x | A)/2 + p(x | B)/2, which is not
p(x | A ∨ B) unless A and B are disjoint and equally likely in the data. The exact mixture weighs
each disjoint region by its probability:

    p(x | A ∨ B) = Σ_c p(c | A ∨ B) · p(x | c),

where c runs over the combinations of values of the discrete families the OR's literals name
(a yes/no attribute has its value or its known-absent value) that satisfy the formula. The
combinations partition the event, so a region where both A and B hold is counted once, and
p(c | A ∨ B) ∝ p(c), the training data's share of c (the registry's ``value_shares`` hook, the
owner of the data's label frequencies; docs/compiler.md, "Negation"). Each branch c is then
lowered as a conjunction of positive conditions, with the terms of the expression outside the OR
(a position, a weighted term) added to every branch, and the families it leaves free enumerated
as ``free_families`` says.

:func:`plan` decides whether this applies and, where it does not, says why; the compiler then
lowers the OR as written, its branches in equal shares.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from conceptlang.compiler.options import CompileOptions, places_apart
from conceptlang.compiler.select import objects_needed
from conceptlang.errors import CompileError
from conceptlang.interface import ConceptRef, ConceptRegistry
from conceptlang.syntax.ast import And, Concept, Expr, Not, Or, Weighted
from conceptlang.syntax.printer import unparse
from conceptlang.syntax.semantics import POSITION_TOLERANCE

MAX_FORMULA_DISJUNCTS = 4096  # DNF terms of the OR's boolean formula examined (not graph branches)


@dataclass(frozen=True)
class Literal:
    """A value of a discrete family, or its negation, as written in the OR's formula."""

    family: str
    value: str
    negated: bool
    text: str
    point: tuple[float, ...] | None = None  # a named place (``position(x, y)``): its point
    concept: Concept | None = None  # a named place: the concept as written
    weight: float = 1.0  # ``w * v`` (w > 0): the weight its branches give the value
    group: bool = False  # under a weighted compound (``2 * (red | blue)``): the weight is the compound's

    def holds(self, combo: dict[str, Any]) -> bool:
        """Whether the literal holds for a combination: a value, the family's value in it; a named
        place, its family's cell (the points near which it lies, a tuple; None: near none)."""
        if self.point is not None:
            cell = combo[self.family]
            return (cell is not None and self.value in cell) != self.negated
        return (combo[self.family] == self.value) != self.negated


@dataclass
class OrWeights:
    """How an expression's OR branches are weighted, for ``explain`` and the JSON sidecar.

    ``source``: "data" (each branch by the data's probability) or "equal"; ``reason``: why equal
    shares where data weights were asked for; ``families``: the families whose value combinations
    are the branches; ``branches``: (combination text, weight); ``written``: (a disjunct of the
    expression's DNF as written, the weight of the combinations that satisfy it and no earlier one);
    ``impossible``: the disjuncts no one object satisfies: two values of an exclusive family, or
    (in an expression of one object) two places farther apart than twice the tolerance.
    """

    source: str
    reason: str | None = None
    families: tuple[str, ...] = ()
    branches: list[tuple[str, float]] = field(default_factory=list)
    written: list[tuple[str, float]] = field(default_factory=list)
    impossible: list[str] = field(default_factory=list)
    apart: list[str] = field(default_factory=list)  # those of ``impossible`` that name two places apart
    # equal shares because a branch places two objects (the compiler then lowers each disjunct flat)
    two_objects: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "reason": self.reason, "families": list(self.families),
                "branches": [{"text": t, "weight": w} for t, w in self.branches],
                "written": [{"text": t, "weight": w} for t, w in self.written],
                "impossible": list(self.impossible)}

    def notice(self) -> str:
        if self.source == "data":
            parts = ", ".join(f"{t} {w:.3f}" for t, w in self.written)
            out = (f"OR branches weighted by the data's probability of each (or_weights=data; "
                   f"{len(self.branches)} combination(s) of {', '.join(self.families)}): {parts}")
            if self.impossible:
                out += (f"; not drawn: {', '.join(self.impossible)} ({self._why_impossible()}, "
                        "which no one object has: probability 0 in the data)")
            return out
        return f"OR branches drawn in equal shares: {self.reason}"

    def _why_impossible(self) -> str:
        kinds = [k for k, hit in (("two values of one exclusive family", len(self.impossible) > len(self.apart)),
                                  (f"two places farther apart than {2 * POSITION_TOLERANCE:g}", self.apart)) if hit]
        return " or ".join(kinds)


@dataclass
class Plan:
    """The data-weighted OR: per branch, the refs that pin its combination and its weight."""

    branches: list[tuple[tuple[ConceptRef, ...], float]]
    other: list[Expr]  # terms of the expression's top-level conjunction outside the OR formula
    record: OrWeights
    # per branch: its named-place terms (a ref: one place drawn near several close points)
    places: list[tuple[Expr | ConceptRef, ...]] = field(default_factory=list)
    # per branch: the disjunct of the OR as written that it is counted under (the first that holds),
    # as (its place in the written order, its text)
    groups: list[tuple[int, str]] = field(default_factory=list)
    # per branch: the weights its disjunct as written gives values (``2 * red | circle``: color → 2)
    weights: list[dict[str, float]] = field(default_factory=list)
    # per branch: (w, families) of each weighted compound its disjunct as written lies under
    # (``2 * (red | blue) & square``, branch red: (2, (color,))): one weight on those values together
    grouped: list[list[tuple[float, tuple[str, ...]]]] = field(default_factory=list)


class _Fallback(Exception):
    """Data weights do not apply; the message says why. ``two_objects``: because a branch places
    two objects (:attr:`OrWeights.two_objects`)."""

    def __init__(self, why: str, two_objects: bool = False):
        super().__init__(why)
        self.two_objects = two_objects


def flatten_and(terms: Sequence[Expr], op: type = And) -> list[Expr]:
    """The terms of a conjunction in order, with the terms of nested conjunctions spliced in (with
    ``op=Or``: of a disjunction and nested disjunctions)."""
    out: list[Expr] = []
    stack = list(reversed(terms))
    while stack:
        t = stack.pop()
        if isinstance(t, op):
            stack.extend(reversed(t.terms))
        else:
            out.append(t)
    return out


def weight_of(t: Expr) -> tuple[float, Expr]:
    """(the product of the weights ``t`` is wrapped in, the expression under them): ``2 * (3 * ~a)``
    → (6, ``~a``); (1, ``t``) for a term with no weight."""
    w = 1.0
    while isinstance(t, Weighted):
        w, t = w * t.weight, t.expr
    return w, t


def weighted_negation(t: Expr) -> Expr | None:
    """A weighted term whose sign makes it a negation, as that negation: ``w * ~e`` (w > 0) →
    ``~e`` and ``-w * e`` → ``~e`` for ``e`` not itself a negation or weight (the sign carries the
    meaning, docs/language.md). None for any other term. The complement lowers a negation to the
    values where it holds, which has no strength for the magnitude to scale."""
    if not isinstance(t, Weighted):
        return None
    w, t = weight_of(t)
    if w > 0 and isinstance(t, Not):
        return t
    if w < 0 and not isinstance(t, Not):
        return Not(t)
    return None


def weighted_conjunction(t: Expr) -> tuple[float, list[Expr]] | None:
    """``w * (a & b & …)`` with w > 0 (nested weights multiplied) as (w, the conjunction's terms,
    nested conjunctions spliced in); None for any other term. Its places may be one object's
    (``2 * (position(0.3, 0.3) & red)``; a negated place only keeps the object away from its point,
    ``2 * (circle & ~position(0.6, 0.4) & ~position(0.4, 0.7))``) or two objects' (``2 *
    (position(a) & position(b))``, drawn as a layout). The joint mode splices such a term into the
    enclosing conjunction with one extra share of its values (docs/compiler.md)."""
    if not isinstance(t, Weighted):
        return None
    w, inner = weight_of(t)
    if w <= 0 or not isinstance(inner, And):
        return None
    return w, flatten_and(inner.terms)


def negated_negation(t: Expr) -> Expr | None:
    """``-w * ~e`` (w > 0) as ``w * e`` (``e`` for w = 1): a negative weight on a negation negates
    it again (the sign rule, docs/language.md), and what is left is positive, so the magnitude
    stays. None for any other term."""
    if not isinstance(t, Weighted):
        return None
    w, inner = weight_of(t)
    if w < 0 and isinstance(inner, Not):
        return inner.expr if w == -1.0 else Weighted(-w, inner.expr)
    return None


def dropped_weights(terms: Sequence[Expr], deep: bool = False) -> list[Expr]:
    """The weighted terms among ``terms`` whose magnitude the complement drops, as written: a
    weight on a negation (``2 * ~red``, ``-2 * red``) and any weight under a negation (``~(2 * red)``,
    ``~(small | 2 * circle)``, shown with its negation), but not ``-2 * ~red`` (``2 * red``).
    Without ``deep``, a weight is looked for only where :func:`push_negations` and the complement of
    a negated compound reach (under a negation, or a weight on one); with it, everywhere (an OR's
    formula)."""
    out: list[Expr] = []
    stack = [(t, False) for t in reversed(terms)]
    while stack:
        node, odd = stack.pop()
        if isinstance(node, Weighted):
            w, inner = weight_of(node)
            if odd or (w < 0) != isinstance(inner, Not):
                out.append(Not(node) if odd else node)
            if deep or odd or isinstance(inner, Not):
                stack.append((inner, odd != (w < 0)))
        elif isinstance(node, Not):
            stack.append((node.expr, not odd))
        elif deep or odd:
            stack.extend((x, odd) for x in reversed(getattr(node, "terms", ())))
    return out


def push_negations(flat: Sequence[Expr]) -> list[Expr]:
    """A conjunction's terms with ``~(A | B)`` read as ``~A & ~B``, ``~~A`` as ``A``, a weighted
    negation as the negation (:func:`weighted_negation`), a negatively weighted negation as what
    it negates (:func:`negated_negation`) and a negated weighted term as the negated term
    (``~(2 * (a | b))`` as ``~a & ~b``; the same boolean semantics;
    negation="complement" lowers each negation on its own, a value's by its complement and a
    position's in the ratio form). A term an OR repeats, nested ORs included, is read once
    (``~(a | (a | b))`` is ``~a & ~b``: the OR's branches are a set)."""
    out: list[Expr] = []
    for t in flat:
        neg = weighted_negation(t)
        dbl = negated_negation(t)
        if neg is not None:
            out.extend(push_negations([neg]))
        elif dbl is not None:
            out.extend(push_negations(flatten_and((dbl,))))
        elif isinstance(t, Not) and isinstance(t.expr, Or):
            out.extend(push_negations([Not(x) for x in dict.fromkeys(flatten_and(t.expr.terms, Or))]))
        elif isinstance(t, Not) and isinstance(t.expr, Not):
            out.extend(push_negations(flatten_and((t.expr.expr,))))
        elif isinstance(t, Not) and isinstance(t.expr, Weighted):  # ~(w * e): ~e (w ≥ 0) or e (w < 0)
            w, inner = weight_of(t.expr)
            out.extend(push_negations([Not(inner)] if w >= 0 else flatten_and((inner,))))
        else:
            out.append(t)
    return out


def _literal(t: Expr, refs: dict, dom, places: bool = False) -> Literal | None:
    """``t`` as a literal: a value of a discrete family or its negation, or a value with a positive
    weight (``2 * red``); with ``places``, also a named place (``position(x, y)``, a point of a
    continuous family), its negation, or the place with a positive weight (``2 * position(x, y)``:
    where it holds is where the place does; the branches near it take the weight)."""
    if isinstance(t, Weighted):
        w, inner = weight_of(t)
        lit = _literal(inner, refs, dom, places) if w > 0 and isinstance(inner, Concept) else None
        return None if lit is None else replace(lit, text=unparse(t), weight=w)
    neg = isinstance(t, Not)
    c = t.expr if neg else t
    if not isinstance(c, Concept):
        return None
    r = refs.get(c)
    if places and r is not None and r.params is not None and not (r.drawn or r.absent):
        point = tuple(float(p) for p in r.params)
        return Literal(r.family, unparse(c), neg, unparse(t), point=point, concept=c)
    if r is None or r.value is None or r.params is not None or r.absent:
        return None
    try:
        fam = dom.family(r.family)
    except Exception:  # a registry whose domain lacks the family
        return None
    if fam.kind != "discrete":
        return None
    return Literal(r.family, r.value, neg, unparse(t))


def value_families(e: Expr, refs: dict, dom) -> list[str] | None:
    """The families of ``e``'s concepts in order of appearance, when every one is a value of a
    discrete family (no place); else None. Weights are seen through: inside a negated compound they
    do not change where it holds (the sign rule, docs/language.md)."""
    if isinstance(e, Weighted) and not isinstance(weight_of(e)[1], Concept):
        return value_families(weight_of(e)[1], refs, dom)
    if isinstance(e, (And, Or)):
        out: list[str] = []
        for t in e.terms:
            got = value_families(t, refs, dom)
            if got is None:
                return None
            out.extend(f for f in got if f not in out)
        return out
    if isinstance(e, Not):
        return value_families(e.expr, refs, dom)
    lit = _literal(e, refs, dom)
    return None if lit is None else [lit.family]


def _literal_points(e: Expr, refs: dict, dom) -> list[tuple[float, ...] | None] | None:
    """For each concept of ``e``, its point when it is a named place and None when it is a value of
    a discrete family; None when some concept is neither."""
    if isinstance(e, Weighted) and not isinstance(weight_of(e)[1], Concept):  # a weighted compound
        return _literal_points(weight_of(e)[1], refs, dom)
    if isinstance(e, (And, Or, Not)):
        out: list[tuple[float, ...] | None] = []
        for t in (e.expr,) if isinstance(e, Not) else e.terms:
            got = _literal_points(t, refs, dom)
            if got is None:
                return None
            out.extend(got)
        return out
    lit = _literal(e, refs, dom, places=True)
    return None if lit is None else [lit.point]


def _literals_only(e: Expr, refs: dict, dom) -> bool:
    """Whether every concept of ``e`` is a value of a discrete family or a named place."""
    return _literal_points(e, refs, dom) is not None


def _names_place(e: Expr, refs: dict, dom) -> bool:
    """Whether ``e``'s concepts are all literals (values or places) and one of them is a place."""
    return any(p is not None for p in _literal_points(e, refs, dom) or ())


def _negated_values(t: Expr, refs: dict, dom) -> bool:
    """Whether ``t`` is a negated compound of values of discrete families or named places
    (``~(red | green)``, ``~(circle & position(0.5, 0.5))``)."""
    return isinstance(t, Not) and not isinstance(t.expr, Concept) and _literals_only(t.expr, refs, dom)


def _dnf(e: Expr, refs: dict, dom) -> list[tuple[Literal, ...]]:
    """The disjunctive normal form of ``e``: its disjuncts, each its literals in written order."""
    neg = weighted_negation(e)
    if neg is not None:  # `2 * ~red`, `-1 * red`: the negation (its magnitude has no data meaning)
        return _dnf(neg, refs, dom)
    dbl = negated_negation(e)
    if dbl is not None:  # `-1 * ~(a | b)`: `a | b`
        return _dnf(dbl, refs, dom)
    if isinstance(e, Weighted):
        w, inner = weight_of(e)
        if w > 0 and isinstance(inner, (And, Or)):  # a weighted compound: its values, weighted as one
            # (a named place in it is drawn per chain and takes no share, as in a weighted conjunction)
            return [tuple(lit if lit.point is not None else replace(lit, weight=lit.weight * w, group=True)
                          for lit in d) for d in _dnf(inner, refs, dom)]
    if isinstance(e, Or):
        out: list[tuple[Literal, ...]] = []
        for t in e.terms:
            out.extend(_dnf(t, refs, dom))
            if len(out) > MAX_FORMULA_DISJUNCTS:
                raise _Fallback(f"the OR's formula has more than {MAX_FORMULA_DISJUNCTS} disjuncts")
        return out
    if isinstance(e, And):
        parts: list[tuple[Literal, ...]] = [()]
        for t in e.terms:
            sub = _dnf(t, refs, dom)
            if len(parts) * len(sub) > MAX_FORMULA_DISJUNCTS:
                raise _Fallback(f"the OR's formula has more than {MAX_FORMULA_DISJUNCTS} disjuncts")
            parts = [p + tuple(lit for lit in q if lit not in p) for p, q in itertools.product(parts, sub)]
        return parts
    if isinstance(e, Not) and isinstance(e.expr, Not):  # ~~a = a
        return _dnf(e.expr.expr, refs, dom)
    if isinstance(e, Not) and isinstance(e.expr, Weighted):  # ~(w * a) holds where ~a does (w > 0), a (w < 0)
        w, inner = weight_of(e.expr)
        return _dnf(Not(inner) if w > 0 else inner, refs, dom)
    if isinstance(e, Not) and isinstance(e.expr, (And, Or)):  # De Morgan: the negation moves to the literals
        flip = Or if isinstance(e.expr, And) else And
        return _dnf(flip(tuple(Not(t) for t in e.expr.terms)), refs, dom)
    lit = _literal(e, refs, dom, places=True)
    if lit is None:
        raise _Fallback(f"{unparse(e, limit=60)!r} inside the OR is not a value of a discrete family or a named place "
                        "(a weight of 0 has no data probability)")
    return [(lit,)]


def plan(expr: Expr, refs: dict, registry: ConceptRegistry, domain: str, options: CompileOptions) -> Plan | OrWeights | None:
    """The data-weighted lowering of ``expr``'s OR (a :class:`Plan`), or an :class:`OrWeights`
    record of equal shares and why, or None when the expression has no OR that is a mixture
    (none at all, or only under a negation or a weight; or log Z given, or τ ≠ 1: the OR is then
    lowered as written, with no notice)."""
    if not isinstance(options.log_z, str) or options.tau != 1.0:
        return None
    flat = flatten_and((expr,))
    if options.negation == "complement":
        flat = push_negations(flat)
    if not any(_mixture_or(t) for t in flat) and not _negated_places(flat, refs, registry, domain, options):
        return None
    if options.or_weights == "equal":
        return OrWeights("equal", "or_weights=equal (the branches as written, log Z taken as equal)")
    try:
        return _plan(flat, refs, registry, domain, options, one_object=objects_needed(expr, refs) == 1)
    except _Fallback as why:
        return OrWeights("equal", str(why), two_objects=why.two_objects)


def _mixture_or(t: Expr) -> bool:
    """Whether the conjunction term ``t`` is an OR, or a positively weighted compound holding one
    (``2 * (red | blue)``, ``2 * ((red | blue) & square)``): the plan's formula, each branch taking
    the weight on the values it pins (:attr:`Plan.grouped`)."""
    if isinstance(t, Or):
        return True
    w, inner = weight_of(t)
    if not isinstance(t, Weighted) or w <= 0:
        return False
    return isinstance(inner, Or) or (isinstance(inner, And) and any(_mixture_or(x) for x in flatten_and(inner.terms)))


def _negated_places(flat: list[Expr], refs: dict, registry: ConceptRegistry, domain: str,
                    options: CompileOptions) -> bool:
    """Whether ``flat`` holds a negated conjunction of values that names a place
    (``~(circle & position(0.5, 0.5))``): an OR of negations by De Morgan, which the plan lowers
    where the data weights apply (negation="complement")."""
    if options.negation != "complement":
        return False
    try:
        dom = registry.domain(domain)
    except Exception:  # a registry without the domain's families
        return False
    return any(_negated_place_compound(t, refs, dom) for t in flat)


def _negated_place_compound(t: Expr, refs: dict, dom) -> bool:
    """Whether ``t`` is a negated conjunction of values that names a place, or a positively weighted
    conjunction holding one (``0.5 * (red & ~(cyan & position(0.7, 0.5)))``: its values weighted
    as one, :func:`_dnf`), written directly or reached as :func:`push_negations` reads its terms
    (``2 * (circle & ~(cyan | yellow & position(0.5, 0.3)))``)."""
    if isinstance(t, Not) and isinstance(t.expr, And):
        return _names_place(t.expr, refs, dom)
    w, inner = weight_of(t)
    return isinstance(t, Weighted) and w > 0 and isinstance(inner, And) \
        and any(_negated_place_compound(x, refs, dom) for x in push_negations(flatten_and(inner.terms)))


def _weighted_literals(t: Expr, refs: dict, dom) -> bool:
    """Whether ``t`` is a positively weighted conjunction of values, negated values and named places
    (``2 * (~red & circle)``): where it holds is a set of value combinations, which the formula
    takes, each branch with the weight on the values it pins (as :func:`_dnf` reads it)."""
    w, inner = weight_of(t)
    return isinstance(t, Weighted) and w > 0 and isinstance(inner, And) and _literals_only(inner, refs, dom)


def _plan(flat: list[Expr], refs: dict, registry: ConceptRegistry, domain: str, options: CompileOptions,
          one_object: bool = False) -> Plan:
    """The plan of ``flat``'s formula. ``one_object``: the expression places one object in every
    branch (:func:`~conceptlang.compiler.select.objects_needed`), so a branch holding two places
    through negations asks for one object near both; else such a branch is two objects, which
    have no one-object data probability (a fallback)."""
    hook = getattr(registry, "value_shares", None)
    if hook is None:
        raise _Fallback("the models' registry has no data frequencies (value_shares)")
    dom = registry.domain(domain)
    in_formula = [_mixture_or(t) or _literal(t, refs, dom) is not None or _negated_values(t, refs, dom)
                  or _negated_place_compound(t, refs, dom) or _weighted_literals(t, refs, dom) for t in flat]
    if any(f and _names_place(t, refs, dom) for t, f in zip(flat, in_formula)):
        # the formula cuts the canvas by its places: a place beside it joins it (it picks regions)
        in_formula = [f or _literal(t, refs, dom, places=True) is not None for t, f in zip(flat, in_formula)]
    formula = [t for t, f in zip(flat, in_formula) if f]
    other = [t for t, f in zip(flat, in_formula) if not f]
    disjuncts = _dnf(And(tuple(formula)) if len(formula) > 1 else formula[0], refs, dom)
    impossible: list[str] = []
    apart: list[str] = []
    for d in disjuncts:
        pos: dict[str, set[str]] = {}
        for lit in d:
            if not lit.negated:
                pos.setdefault(lit.family, set()).add(lit.value)
        two = [f for f, vs in pos.items() if len(vs) > 1]
        places = [f for f in two if any(lit.point is not None for lit in d if lit.family == f)]
        if places and not one_object:
            raise _Fallback(f"a branch names two places of {places[0]} (two objects), which have no one-object "
                            "data probability", two_objects=True)
        # one object: two places reached through negations (``position(a) & ~(~position(b) & ~red)``)
        # hold together only near both points (the regions below); farther apart, nowhere
        held = [lit.point for lit in d if lit.point is not None and not lit.negated]
        if any(places_apart(a, b) for a, b in itertools.combinations(held, 2)):
            impossible.append(" & ".join(lit.text for lit in d))
            apart.append(impossible[-1])
        elif any(dom.family(f).exclusive for f in two if f not in places):  # no data example satisfies it
            impossible.append(" & ".join(lit.text for lit in d))
        if options.negation == "ratio" and any(lit.negated for lit in d):
            raise _Fallback("negation=ratio: a negation inside the OR is a repulsion, not a set of values with a data probability")
    families = tuple(sorted({lit.family for d in disjuncts for lit in d if lit.point is None}))
    for f in families:
        fam = dom.family(f)
        if len(fam.values) > 1 and not fam.exclusive:
            raise _Fallback(f"{f} is not an exclusive family, so its values do not partition the data")
    place, points = _places(disjuncts, registry, domain, options)
    combos: list[tuple[tuple[Any, ...], float]] = []
    for cell, given in _cells(domain, place, points):
        try:
            shares = hook(domain, families, given, joint=True) if place else hook(domain, families, ())
        except TypeError:  # a registry whose value_shares has no joint shares
            raise _Fallback("the models' registry gives no joint data frequencies for named places") from None
        if shares is None:
            raise _Fallback(f"the models' registry has no data frequencies for {', '.join(families + place)} "
                            f"(no generator for the {domain} domain)")
        combos.extend((combo + cell, share) for combo, share in _checked(shares, families, dom))
    names = families + place
    kept: list[tuple[tuple[str | None, ...], float]] = []
    for combo, share in combos:
        if share <= 0.0:
            continue
        values = dict(zip(names, combo))
        if any(all(lit.holds(values) for lit in d) for d in disjuncts):
            kept.append((combo, share))
    if not kept:
        raise _Fallback(f"no example of the data satisfies the OR (over {', '.join(names)})")
    if len(kept) > options.max_disjuncts:
        raise _Fallback(f"its {len(kept)} value combinations exceed max_disjuncts = {options.max_disjuncts}")
    total = sum(s for _, s in kept)
    absent = getattr(registry, "absent", None)
    branches: list[tuple[tuple[ConceptRef, ...], float]] = []
    place_terms: list[tuple[Expr, ...]] = []
    texts: list[tuple[str, float]] = []
    written = [0.0] * len(disjuncts)
    groups: list[tuple[int, str]] = []
    weights: list[dict[str, float]] = []
    grouped: list[list[tuple[float, tuple[str, ...]]]] = []
    for combo, share in kept:
        w = share / total
        pinned: list[ConceptRef] = []
        for f, v in zip(families, combo):
            fam = dom.family(f)
            if v is not None:
                pinned.append(ConceptRef(domain, f, value=v))
                continue
            if len(fam.values) > 1:
                raise _Fallback(f"data examples with no value of {f} satisfy the OR, and no condition names them")
            ref = absent(ConceptRef(domain, f, value=fam.values[0])) if absent is not None else None
            if ref is None:
                raise _Fallback(f"the models have no known-absent value of {f} to condition a branch on")
            pinned.append(ref)
        values = dict(zip(names, combo))
        first = next(k for k, d in enumerate(disjuncts) if all(lit.holds(values) for lit in d))
        cell = combo[len(families):]
        terms: tuple[Expr | ConceptRef, ...] = ()
        if place and cell[0] is not None and len(cell[0]) == 1:  # near one named point: its concept,
            # with the weight the branch's disjunct as written gives it (``red | 2 * position(x, y)``),
            # and the negations of the named points close to it (where those do not hold)
            near = points[cell[0][0]].concept
            w_place = next((lit.weight for lit in disjuncts[first] if lit.point is not None
                            and lit.value == cell[0][0] and not lit.negated and not lit.group), 1.0)
            terms = (near if w_place == 1.0 else Weighted(w_place, near),) + tuple(
                Not(lit.concept) for lit in _close_to(cell[0], points))
        elif place and cell[0] is not None:  # near several close points at once: one drawn place
            terms = (_near_all(domain, place[0], cell[0], points),)
        elif place:  # away from every named point: their negations
            terms = tuple(Not(lit.concept) for lit in points.values())
        branches.append((tuple(pinned), w))
        place_terms.append(terms)
        texts.append((" & ".join([r.qualified for r in pinned] + [t.qualified if isinstance(t, ConceptRef) else unparse(t)
                                                                  for t in terms]), w))
        written[first] += w
        groups.append((first, " & ".join(lit.text for lit in disjuncts[first])))
        weights.append({lit.family: lit.weight for lit in disjuncts[first]
                        if not lit.negated and not lit.group and lit.weight != 1.0 and lit.point is None})
        by_weight: dict[float, list[str]] = {}
        for lit in disjuncts[first]:
            if lit.group and lit.weight != 1.0 and lit.family not in by_weight.get(lit.weight, []):
                by_weight.setdefault(lit.weight, []).append(lit.family)
        grouped.append([(w, tuple(fams)) for w, fams in by_weight.items()])
    written_text = []
    for k, d in enumerate(disjuncts):
        if written[k] <= 0.0:
            continue
        text = " & ".join(lit.text for lit in d)
        written_text.append((text if not written_text else f"{text} (not an earlier branch)", written[k]))
    record = OrWeights("data", None, names, texts, written_text, impossible, apart)
    return Plan(branches, other, record, place_terms, groups, weights, grouped)


def _places(disjuncts: list[tuple[Literal, ...]], registry: ConceptRegistry, domain: str,
            options: CompileOptions) -> tuple[tuple[str, ...], dict[str, Literal]]:
    """The continuous family the formula's named places belong to (an empty tuple without places)
    and those places, each point's text → its literal. Places closer than twice the position
    tolerance (a point can satisfy both) need each chain's place drawn from the data where some
    hold and the others do not (named_positions and free_families "data", negation "complement",
    a registry that draws the family); else the OR falls back to equal shares."""
    found: dict[str, Literal] = {}
    for d in disjuncts:
        for lit in d:
            if lit.point is not None:
                found.setdefault(lit.value, lit)
    if not found:
        return (), {}
    fams = {lit.family for lit in found.values()}
    if len(fams) > 1:
        raise _Fallback(f"the OR names places of several families ({', '.join(sorted(fams))})")
    lits = list(found.values())
    close = [(a, b) for i, a in enumerate(lits) for b in lits[i + 1:] if not places_apart(a.point, b.point)]
    if close:
        a, b = close[0]
        why = (f"{a.value} and {b.value} are closer than twice the position tolerance "
               f"({2 * POSITION_TOLERANCE:g}), so a point can satisfy both")
        if options.named_positions != "data" or options.free_families != "data" or options.negation != "complement":
            raise _Fallback(why + ", and the regions where some hold and the others do not are drawn only with "
                                  "named_positions, free_families = data and negation = complement")
        hook = getattr(registry, "value_draws", None)
        if hook is None or hook(domain, lits[0].family, {}, 1, 0) is None:
            raise _Fallback(why + f", and the models' registry cannot draw {lits[0].family} from the data")
        if len(lits) > MAX_CLOSE_PLACES:
            raise _Fallback(why + f", and the OR names more than {MAX_CLOSE_PLACES} places")
    return (lits[0].family,), {lit.value: lit for lit in lits}


MAX_CLOSE_PLACES = 6  # named places of one OR when some are close (their regions: up to 2⁶ cells)


def _close_to(near: tuple[str, ...], points: dict[str, Literal]) -> list[Literal]:
    """The named points outside ``near`` within twice the tolerance of one of its points (a point
    near all of ``near`` may be near them too); the rest are implied away."""
    return [lit for text, lit in points.items() if text not in near
            and any(not places_apart(lit.point, points[t].point) for t in near)]


def _near_all(domain: str, family: str, near: tuple[str, ...], points: dict[str, Literal]) -> ConceptRef:
    """One object's place drawn near every point of ``near`` and away from the points close to them."""
    return ConceptRef(domain, family, params=tuple(p for t in near for p in points[t].point), drawn=True,
                      points=len(near), avoid=tuple(p for lit in _close_to(near, points) for p in lit.point))


def _cells(domain: str, place: tuple[str, ...], points: dict[str, Literal]):
    """(the place family's cell, the refs that hold there) for each region the named places cut the
    canvas into: near each set of points that can hold together (pairwise closer than twice the
    tolerance; a cell names the points, a tuple) and away from the other points close to them, and
    away from every one (the cell None); one region, no refs, without places. Places all apart
    give one cell per point and the away cell."""
    if not place:
        yield (), ()
        return
    texts = list(points)
    overlap = any(_close_to((t,), points) for t in texts)  # else no two points can hold together
    for size in range(1, len(texts) + 1 if overlap else 2):
        for near in itertools.combinations(texts, size):
            if any(places_apart(points[a].point, points[b].point) for a, b in itertools.combinations(near, 2)):
                continue
            if size == 1 and not _close_to(near, points):
                yield (near,), (ConceptRef(domain, place[0], params=points[near[0]].point),)
                continue
            yield (near,), (replace(_near_all(domain, place[0], near, points), drawn=False),)
    every = tuple(p for lit in points.values() for p in lit.point)
    yield (None,), (ConceptRef(domain, place[0], params=every, drawn=True, away=True, points=len(points)),)


def _checked(shares: Any, families: Sequence[str], dom) -> list[tuple[tuple[str | None, ...], float]]:
    """The registry's shares as (combination, share) in the families' value order; a malformed
    answer is a CompileError naming what is wrong."""
    if not isinstance(shares, dict):
        raise CompileError(f"the registry's value_shares returned {type(shares).__name__}, not a dict of shares")
    out = []
    values = [dom.family(f).values for f in families]
    for combo, share in shares.items():
        if not isinstance(combo, tuple) or len(combo) != len(families):
            raise CompileError(f"the registry's value_shares gave the key {combo!r}, not one value per family of "
                               f"({', '.join(families)})")
        for f, vals, v in zip(families, values, combo):
            if v is not None and v not in vals:
                raise CompileError(f"the registry's value_shares names {v!r}, not a value of {f} ({', '.join(vals)})")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) or share < 0:
            raise CompileError(f"the registry's value_shares gave {combo!r} the share {share!r}; shares must be finite and ≥ 0")
        out.append((combo, float(share)))

    def key(item):
        return tuple(vals.index(v) if v is not None else len(vals) for vals, v in zip(values, item[0]))

    return sorted(out, key=key)
