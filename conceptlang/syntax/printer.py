"""AST → text with the fewest parentheses that re-parse to an equal tree.

``parse(unparse(node)) == node`` for every well-formed AST (property-tested). Numbers are printed
exactly: integral values as integers (``2``), everything else with ``repr`` (shortest text that
round-trips a float bit for bit). The printer walks the tree with an explicit stack, so depth is
limited only by memory.
"""

from __future__ import annotations

import math
import re

from conceptlang.errors import ConceptLangError
from conceptlang.syntax.ast import And, Concept, Definition, Node, Not, Or, Program, Weighted

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Binding levels, loosest first: | < & < the prefix operators ~ and w * (which nest either way:
# ``~2 * a`` and ``2 * ~a``) < atoms. A child printed where a tighter level is needed gets
# parentheses. This is the one precedence table of the printers (``unparse``, the compiler's
# ``explain`` text); the grammar (grammar/conceptlang.lark) defines the same order.
_OR, _AND, _PREFIX, _ATOM = 1, 2, 3, 4
PRECEDENCE: dict[type, int] = {Or: _OR, And: _AND, Not: _PREFIX, Weighted: _PREFIX, Concept: _ATOM}


class InvalidTreeError(ConceptLangError, ValueError):
    """An AST built by hand that has no text form (empty chain, bad name, non-finite number)."""


def format_number(value: float) -> str:
    """Text for a finite number that parses back to exactly the same float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTreeError(f"expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidTreeError(f"cannot print the non-finite number {value!r}: literals must be finite")
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_concept(concept: Concept) -> str:
    for part in (concept.name, concept.family):
        if part is not None and not (isinstance(part, str) and _NAME.match(part)):
            raise InvalidTreeError(
                f"cannot print the concept name {part!r}: names are letters, digits and '_', "
                "not starting with a digit"
            )
    text = concept.qualified
    if concept.args is not None:
        text += "(" + ", ".join(format_number(a) for a in concept.args) + ")"
    return text


def _unwrap(node: Node) -> Node:
    # A one-term chain has no syntax of its own; it prints as its term.
    while isinstance(node, (And, Or)) and len(node.terms) == 1:
        node = node.terms[0]
    return node


def precedence(node: Node) -> int:
    """The binding level of an expression node as printed (1-term chains print as their term)."""
    return PRECEDENCE.get(type(_unwrap(node)), _ATOM)


def unparse(node: Node, limit: int | None = None) -> str:
    """Print a Program, Definition or expression as ConceptLang text.

    A program prints as ``name = expr; ... body`` on one line. Raises
    :class:`InvalidTreeError` for trees that have no text form (an empty ``And``/``Or``, a name
    that is not an identifier, a non-finite number). With ``limit``, text longer than ``limit``
    characters is cut there and ends in "…" (expanded definitions are DAGs whose written-out text
    can be exponentially long; printing stops at the limit).
    """
    out: list[str] = []
    size = counted = 0
    # Items: a str to emit as is, or (node, level its context needs).
    stack: list = [(node, _OR)]
    while stack:
        if limit is not None:
            size += sum(len(t) for t in out[counted:])
            counted = len(out)
            if size > limit:
                return "".join(out)[:limit] + "…"
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        node, need = item
        if isinstance(node, Program):
            stack.append((node.body, _OR))
            for definition in reversed(node.definitions):
                stack.append(" ")
                stack.append((definition, _OR))
            continue
        if isinstance(node, Definition):
            if not (isinstance(node.name, str) and _NAME.match(node.name)):
                raise InvalidTreeError(f"cannot print the definition name {node.name!r}")
            out.append(f"{node.name} = ")
            stack.append(";")
            stack.append((node.expr, _OR))
            continue
        node = _unwrap(node)
        if isinstance(node, Concept):
            out.append(format_concept(node))
            continue
        if not isinstance(node, (Not, Weighted, And, Or)):
            raise InvalidTreeError(f"cannot print {type(node).__name__} object: not a ConceptLang AST node")
        if PRECEDENCE[type(node)] < need:
            out.append("(")
            stack.append(")")
        if isinstance(node, Not):
            out.append("~")
            stack.append((node.expr, _PREFIX))
        elif isinstance(node, Weighted):
            out.append(f"{format_number(node.weight)} * ")
            stack.append((node.expr, _PREFIX))
        else:
            if not node.terms:
                raise InvalidTreeError(f"cannot print an empty {type(node).__name__}: chains need at least one term")
            sep, child_need = (" & ", _PREFIX) if isinstance(node, And) else (" | ", _AND)
            terms = node.terms
            for i in range(len(terms) - 1, -1, -1):
                stack.append((terms[i], child_need))
                if i:
                    stack.append(sep)
    text = "".join(out)
    return text if limit is None or len(text) <= limit else text[:limit] + "…"
