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

# Binding levels, loosest first. A child printed where a tighter level is needed gets parentheses.
_OR, _AND, _PREFIX, _ATOM = 1, 2, 3, 4


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


def _level(node: Node) -> int:
    if isinstance(node, Or):
        return _OR
    if isinstance(node, And):
        return _AND
    if isinstance(node, (Not, Weighted)):
        return _PREFIX
    return _ATOM


def unparse(node: Node) -> str:
    """Print a Program, Definition or expression as ConceptLang text.

    A program prints as ``name = expr; ... body`` on one line. Raises
    :class:`InvalidTreeError` for trees that have no text form (an empty ``And``/``Or``, a name
    that is not an identifier, a non-finite number).
    """
    out: list[str] = []
    # Items: a str to emit as is, or (node, level its context needs).
    stack: list = [(node, _OR)]
    while stack:
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
        if _level(node) < need:
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
    return "".join(out)
