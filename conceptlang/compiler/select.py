"""Choosing the model set an expression is compiled against (docs/compiler.md, "Model sets").

An expression asks for k objects when a conjunction holds k distinct values of one continuous
family (``position(0.2, 0.25) & position(0.8, 0.75)``: two objects, one at each place;
:mod:`conceptlang.syntax.objects`). A model composes such values only if its training images
held that many objects, which its registry reports through the optional hook
``registry.max_objects(ref)``. When the models in use cover the expression nothing changes; else
the compiler turns to the first set the registry lists (the optional hook
``registry.model_sets()``; only sets with ``selectable`` true) that serves every concept and
covers k objects, and records which set and why (``EnergyGraph.model_set``, shown by ``explain``
and the sample sidecar). When no listed set covers it, the compiler warns (an error with
``strict``) and names a set that would serve it; a concept no set in use serves stays a name
error, which then names a set that has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conceptlang.compiler.resolve import resolve_names
from conceptlang.errors import ConceptLangError, NameResolutionError
from conceptlang.interface import ConceptRef, ConceptRegistry
from conceptlang.syntax.ast import Concept, Expr
from conceptlang.syntax.objects import object_counts


class ModelSetWarning(UserWarning):
    """The models in use were not trained for what the expression asks (e.g. two objects)."""


@dataclass
class Selection:
    registry: Any
    refs: dict[Concept, ConceptRef]
    domain: str
    record: dict | None = None  # {"name", "path", "reason"} when the compiler switched sets
    warning: str | None = None


def objects_needed(expr: Expr, refs: dict[Concept, ConceptRef]) -> int:
    """The most objects one branch of ``expr`` places: distinct values of one continuous family."""

    def key(c: Concept):
        ref = refs[c]
        return (ref.family, ref.params) if ref.params is not None else None

    return max(object_counts(expr, key))


def placing(expr_refs: dict[Concept, ConceptRef]) -> list[str]:
    return sorted({r.qualified for r in expr_refs.values() if r.params is not None})


def coverage(registry: ConceptRegistry, refs: dict[Concept, ConceptRef]) -> tuple[int | None, list[str]]:
    """(the fewest objects per training image among the models serving ``refs``, those models'
    names at that count); (None, []) when the registry does not say."""
    hook = getattr(registry, "max_objects", None)
    if hook is None or not refs:
        return None, []
    per: dict[str, int] = {}
    for ref in set(refs.values()):
        model, _ = registry.model_for(ref)
        per[model.name] = min(per.get(model.name, 1 << 30), int(hook(ref)))
    low = min(per.values())
    return low, sorted(n for n, v in per.items() if v == low)


def _where(registry: Any) -> str:
    d = getattr(registry, "models_dir", None)
    if d is None:
        return ""
    from conceptlang.resources import display_path

    return f" ({display_path(d)})"


def _objects(k: int) -> str:
    return "one object" if k == 1 else f"{k} objects"


def _per_image(k: int) -> str:
    return "one object per image" if k == 1 else f"up to {k} objects per image"


def _try(s, expr: Expr, source: str, domain: str | None):
    """(refs, domain, covered) of ``expr`` in set ``s``, or None when it does not serve every concept.
    A listed (selectable) set that cannot be read is an error; a suggestion that cannot is skipped."""
    try:
        reg = s.registry
    except ConceptLangError:
        if s.selectable:
            raise
        return None
    try:
        refs, dom = resolve_names(expr, reg, source, domain)
    except ConceptLangError:
        return None
    cov, _ = coverage(reg, refs)
    return refs, dom, cov


def _suggestion(sets: list, expr: Expr, source: str, domain: str | None, k: int) -> str:
    for s in sets:
        got = _try(s, expr, source, domain)
        if got is not None and (got[2] is None or got[2] >= k):
            extra = f" for up to {_objects(got[2])}" if got[2] is not None and k > 1 else ""
            return f"{s.describe()} serves it{extra}: {s.option}"
    return ""


def select_model_set(expr: Expr, source: str, registry: ConceptRegistry, domain: str | None) -> Selection:
    """Resolve ``expr`` against the registry, or against the set it lists that covers the expression."""
    try:
        refs, dom = resolve_names(expr, registry, source, domain)
        err: ConceptLangError | None = None
    except NameResolutionError as e:
        refs, dom, err = {}, "", e
    if err is None:
        k = objects_needed(expr, refs)
        cov, short = coverage(registry, refs)
        if cov is None or k <= cov:
            return Selection(registry, refs, dom)
    hook = getattr(registry, "model_sets", None)
    sets = list(hook()) if hook is not None else []
    best = None
    for s in (s for s in sets if s.selectable):
        got = _try(s, expr, source, domain)
        if got is None:
            continue
        r2, d2, c2 = got
        k2 = objects_needed(expr, r2)
        if c2 is None or k2 <= c2:
            if err is not None:
                reason = f"the models in use{_where(registry)} do not serve {source.strip() or 'the expression'!r}"
            else:
                reason = (f"the expression places {_objects(k)} ({', '.join(placing(refs))}), and "
                          f"{', '.join(short)}{_where(registry)} {'was' if len(short) == 1 else 'were'} trained on "
                          f"{_per_image(cov)}; the {s.name} models on {_per_image(c2 or k2)} (manifest max_objects)")
            return Selection(s.registry, r2, d2, {"name": s.name, "path": s.where, "reason": reason})
        if best is None or (c2 or 0) > (best[3] or 0):
            best = (s, r2, d2, c2)
    if err is not None:
        hint = _suggestion([s for s in sets if not s.selectable], expr, source, domain, 1)
        if not hint:
            raise err
        raise type(err)(f"{err.message}; {hint}", err.location)
    msg = (f"the expression places {_objects(k)} ({', '.join(placing(refs))}), but {', '.join(short)}{_where(registry)} "
           f"{'was' if len(short) == 1 else 'were'} trained on {_per_image(cov)} (manifest max_objects), "
           "so samples may show fewer objects or fragments")
    chosen = Selection(registry, refs, dom)
    if best is not None and (best[3] or 0) > cov:
        s, r2, d2, c2 = best
        chosen = Selection(s.registry, r2, d2, {
            "name": s.name, "path": s.where,
            "reason": f"no model set is trained for {_objects(k)}; the {s.name} models on {_per_image(c2)}, "
                      f"the most of the sets listed"})
        msg = (f"the expression places {_objects(k)} ({', '.join(placing(refs))}), but no model set is trained for "
               f"{_objects(k)} per image; the closest, {s.describe()}, on {_per_image(c2)}, composes beyond its "
               "training (objects that touch or are missing)")
    hint = _suggestion([s for s in sets if not s.selectable], expr, source, domain, k)
    chosen.warning = msg + (f"; {hint}" if hint else "")
    return chosen
