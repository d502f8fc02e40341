"""Boolean semantics: does an image with these ground-truth labels satisfy the expression?

Labels (the project-wide format): a flat dict concept → bool, keyed by qualified
(``"color.red"``) and bare (``"red"``) names, plus ``"objects"``: a list of per-object dicts with
``x``, ``y`` in [0, 1] from the top-left. A concept is looked up under the name it is written
with. ``position(x, y)`` holds when some object's centre is within ``position_tolerance``
(Euclidean, default 0.1) of (x, y).

Operators: ``~`` is not, ``&`` is all, ``|`` is any. A weight's meaning is its sign:
``w * e`` means ``e`` for ``w >= 0`` and ``~e`` for ``w < 0``, because a negative weight
subtracts the energy exactly as ``~`` does inside a conjunction; the magnitude only sharpens or
flattens the distribution. (``0 * e`` therefore still means ``e``, although the sampler ignores
a zero-weighted term.)
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Mapping

from conceptlang.errors import NameResolutionError
from conceptlang.syntax.ast import And, Concept, Expr, Not, Or, Program, Weighted
from conceptlang.syntax.passes import expand_definitions
from conceptlang.syntax.walk import postorder

POSITION_TOLERANCE = 0.1
_SLACK = 1e-9


def _where(concept: Concept) -> str:
    # Spans with source text render their own line/caret; others get the position in words.
    return f" (at {concept.span.describe()})" if concept.span.line and not concept.span.source else ""


def _bool_label(key: str, value: Any, concept: Concept) -> bool:
    if isinstance(value, bool):
        return value
    # numpy.bool_ and 0/1 integers are fine; anything else is a malformed label.
    if (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")) or (
        isinstance(value, int) and value in (0, 1)
    ):
        return bool(value)
    raise NameResolutionError(
        f"the label for {key!r} must be true or false, got {value!r}{_where(concept)}", concept.span.location()
    )


def _position_holds(concept: Concept, labels: Mapping[str, Any], tolerance: float) -> bool:
    if len(concept.args) != 2:
        raise NameResolutionError(
            f"position takes two arguments (x, y), got {len(concept.args)}{_where(concept)}",
            concept.span.location(),
        )
    objects = labels.get("objects")
    if not isinstance(objects, (list, tuple)):
        raise NameResolutionError(
            f"the labels have no 'objects' list, which {_text(concept)} needs{_where(concept)}",
            concept.span.location(),
        )
    x, y = concept.args
    for obj in objects:
        try:
            ox, oy = float(obj["x"]), float(obj["y"])
        except (KeyError, TypeError, ValueError):
            raise NameResolutionError(
                f"every object in the labels needs numeric 'x' and 'y', got {obj!r}", concept.span.location()
            ) from None
        # Inclusive, with a little slack so that a distance of exactly 0.1 written in decimal
        # (0.38 vs 0.3 and 0.76 vs 0.7) is not lost to binary rounding.
        if math.hypot(ox - x, oy - y) <= tolerance + _SLACK:
            return True
    return False


def _text(concept: Concept) -> str:
    from conceptlang.syntax.printer import format_concept

    return format_concept(concept)


def concept_holds(
    concept: Concept, labels: Mapping[str, Any], position_tolerance: float = POSITION_TOLERANCE
) -> bool:
    """The truth of one concept under ``labels`` (see the module docstring)."""
    if concept.args is not None:
        if concept.name == "position" and concept.family in (None, "position"):
            return _position_holds(concept, labels, position_tolerance)
        raise NameResolutionError(
            f"{_text(concept)} has no boolean meaning: position(x, y) is the only parameterised "
            f"concept the labels describe{_where(concept)}",
            concept.span.location(),
        )
    key = concept.qualified
    if key == "objects" or key not in labels:
        keys = [k for k in labels if k != "objects" and isinstance(k, str)]
        close = difflib.get_close_matches(key, keys, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise NameResolutionError(f"no label for the concept {key!r}{_where(concept)}{hint}", concept.span.location())
    return _bool_label(key, labels[key], concept)


def evaluate(
    expr: Program | Expr, labels: Mapping[str, Any], position_tolerance: float = POSITION_TOLERANCE
) -> bool:
    """True when ``labels`` satisfy ``expr`` (a Program has its definitions expanded first).

    Every concept is looked up, so a concept missing from ``labels`` is an error naming it
    (:class:`NameResolutionError`) even where the result would not depend on it.
    """
    root = expand_definitions(expr) if isinstance(expr, Program) else expr
    value: dict[int, bool] = {}
    for node in postorder(root):
        if isinstance(node, Concept):
            result = concept_holds(node, labels, position_tolerance)
        elif isinstance(node, Not):
            result = not value[id(node.expr)]
        elif isinstance(node, And):
            result = all(value[id(t)] for t in node.terms)
        elif isinstance(node, Or):
            result = any(value[id(t)] for t in node.terms)
        elif isinstance(node, Weighted):
            result = value[id(node.expr)] != (node.weight < 0)
        else:
            raise TypeError(f"not a ConceptLang expression: {type(node).__name__}")
        value[id(node)] = result
    return value[id(root)]
