"""Name resolution: every concept of an expression → one :class:`ConceptRef` in one domain.

A bare name resolves when exactly one family (of one domain) has that value; a qualified name
(``color.red``) names its family; a parameterised name (``position(0.3, 0.7)``) names a continuous
family and its arguments are checked against the family's parameter ranges. Unknown names get
"did you mean" suggestions (difflib); ambiguous ones list their candidates. When concepts could
come from several domains, the domain the other concepts agree on decides; concepts from
different domains in one expression are an error.
"""

from __future__ import annotations

import difflib

from conceptlang.errors import ConceptLangError, ExpressionError, NameResolutionError, SourceLocation
from conceptlang.interface import ConceptRef, ConceptRegistry
from conceptlang.syntax.ast import Concept, Expr
from conceptlang.syntax.printer import format_concept
from conceptlang.syntax.walk import postorder  # every distinct node once, children first, iteratively


def location(node: object, source: str) -> SourceLocation | None:
    span = getattr(node, "span", None)
    if span is None or span.line <= 0:
        return None
    text = source or getattr(span, "source", "")
    return SourceLocation(span.line, span.column, text)


def resolve_names(expr: Expr, registry: ConceptRegistry, source: str = "",
                  domain: str | None = None) -> tuple[dict[Concept, ConceptRef], str]:
    """Map every distinct concept of ``expr`` to its reference; return the mapping and the domain."""
    concepts: list[Concept] = []
    seen: set[Concept] = set()
    for node in postorder(expr):
        if isinstance(node, Concept) and node not in seen:
            seen.add(node)
            concepts.append(node)

    cands: dict[Concept, list[ConceptRef]] = {}
    for c in concepts:
        found = _candidates(c, registry)
        if domain is not None:
            found = [r for r in found if r.domain == domain]
        if not found:
            if c.args is not None and registry.candidates(c.name, c.family):
                raise ExpressionError(f"{c.qualified} takes no arguments (it is not a parameterised concept)",
                                      location(c, source))
            raise _unknown(c, registry, source, domain)
        cands[c] = found

    # The domain every concept can live in.
    common: set[str] | None = None
    for found in cands.values():
        ds = {r.domain for r in found}
        common = ds if common is None else common & ds
    if not common:
        by_domain = ", ".join(f"{format_concept(c)} ({'/'.join(sorted({r.domain for r in f}))})"
                              for c, f in cands.items())
        raise ExpressionError(f"the concepts come from different domains and cannot be composed: {by_domain}")
    if len(common) == 1:
        (dom,) = common
        cands = {c: [r for r in f if r.domain == dom] for c, f in cands.items()}

    refs: dict[Concept, ConceptRef] = {}
    for c, found in cands.items():
        if len(found) > 1:
            listed = ", ".join(f"{r.qualified} ({r.domain})" for r in found)
            raise NameResolutionError(
                f"ambiguous concept {format_concept(c)!r}: it could mean {listed}; write the qualified name",
                location(c, source),
            )
        refs[c] = _with_params(c, found[0], registry, source)
    doms = {r.domain for r in refs.values()}
    if len(doms) != 1:  # pragma: no cover - guarded by the intersection above
        raise ExpressionError(f"the concepts come from different domains: {sorted(doms)}")
    return refs, doms.pop()


def _candidates(c: Concept, registry: ConceptRegistry) -> list[ConceptRef]:
    if c.args is not None:
        # position(0.3, 0.7): the name is the family (optionally qualified as domain-less family.name).
        name = c.name if c.family is None else f"{c.family}.{c.name}"
        return [r for r in registry.candidates(name) if r.value is None]
    return list(registry.candidates(c.name, c.family))


def _unknown(c: Concept, registry: ConceptRegistry, source: str, domain: str | None) -> NameResolutionError:
    text = c.qualified
    known = registry.known_names()
    close = difflib.get_close_matches(text, known, n=3, cutoff=0.6)
    if not close and c.family is not None:
        close = difflib.get_close_matches(c.name, known, n=3, cutoff=0.6)
    where = f" in domain {domain!r}" if domain else ""
    msg = f"unknown concept {format_concept(c)!r}{where}"
    if close:
        msg += "; did you mean " + " or ".join(repr(n) for n in close) + "?"
    return NameResolutionError(msg, location(c, source))


def _with_params(c: Concept, ref: ConceptRef, registry: ConceptRegistry, source: str) -> ConceptRef:
    try:
        fam = registry.domain(ref.domain).family(ref.family)
    except ConceptLangError:
        fam = None
    if fam is None:
        return ref
    if fam.kind == "continuous":
        if c.args is None:
            raise NameResolutionError(
                f"{fam.name} is a parameterised concept: write {fam.name}({', '.join(fam.params)})",
                location(c, source),
            )
        return ConceptRef(ref.domain, ref.family, params=check_arguments(c, fam, source))
    if c.args is not None:
        raise ExpressionError(f"{c.qualified} takes no arguments", location(c, source))
    return ref


def check_arguments(c: Concept, fam, source: str) -> tuple[float, ...]:
    """The arguments of ``c``, a concept of the continuous family ``fam``, as floats: an
    :class:`ExpressionError` at ``c`` unless they are as many as its parameters and within its ranges."""
    args = c.args or ()
    if len(args) != len(fam.params):
        raise ExpressionError(f"{fam.name} takes {len(fam.params)} argument(s) ({', '.join(fam.params)}), got {len(args)}",
                              location(c, source))
    for p, v, (lo, hi) in zip(fam.params, args, fam.ranges or [(-float("inf"), float("inf"))] * len(args)):
        if not (lo <= v <= hi):
            raise ExpressionError(f"{fam.name} argument {p}={v:g} is outside [{lo:g}, {hi:g}]", location(c, source))
    return tuple(float(a) for a in args)


def check_definitions_shadowing(definitions, registry: ConceptRegistry, source: str) -> None:
    """A definition may not take the name of a concept the registry knows."""
    for d in definitions:
        hits = registry.candidates(d.name)
        if hits:
            listed = ", ".join(f"{r.qualified} ({r.domain})" for r in hits)
            raise NameResolutionError(f"definition {d.name!r} shadows the concept {listed}; rename it",
                                      location(d, source))
