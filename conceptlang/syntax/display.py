"""Human and machine views of an AST: an indented tree and JSON (both built without recursion).

``json.dumps`` recurses in C and fails on 10,000-level trees, so :func:`to_json` writes the text
itself with an explicit stack; scalars still go through ``json.dumps``.
"""

from __future__ import annotations

import json
from typing import Any

from conceptlang.syntax.ast import And, Concept, Definition, Node, Not, Or, Program, Span, Weighted
from conceptlang.syntax.printer import format_concept, format_number
from conceptlang.syntax.walk import depth

MAX_INDENTED_DEPTH = 64


def _span_dict(span: Span) -> dict[str, int]:
    return {"line": span.line, "column": span.column, "start": span.start, "end": span.end}


def _node_fields(node: Node) -> dict[str, Any]:
    """The node's JSON object with child nodes left as nodes (expanded by the caller)."""
    if isinstance(node, Concept):
        fields: dict[str, Any] = {
            "type": "Concept",
            "name": node.name,
            "family": node.family,
            "args": list(node.args) if node.args is not None else None,
            "text": format_concept(node),
        }
    elif isinstance(node, Not):
        fields = {"type": "Not", "expr": node.expr}
    elif isinstance(node, (And, Or)):
        fields = {"type": type(node).__name__, "terms": list(node.terms)}
    elif isinstance(node, Weighted):
        fields = {"type": "Weighted", "weight": node.weight, "expr": node.expr}
    elif isinstance(node, Definition):
        fields = {"type": "Definition", "name": node.name, "expr": node.expr}
    elif isinstance(node, Program):
        fields = {"type": "Program", "definitions": list(node.definitions), "body": node.body}
    else:
        raise TypeError(f"not a ConceptLang AST node: {type(node).__name__}")
    fields["span"] = _span_dict(node.span)
    return fields


def to_json(node: Node, indent: int | None = 2) -> str:
    """The tree as JSON: objects with ``type`` (Program, Definition, Concept, Not, And, Or,
    Weighted), their fields, and ``span`` (line, column, start, end).

    Trees deeper than :data:`MAX_INDENTED_DEPTH` are written on one line whatever ``indent``
    says: indentation would grow quadratically with depth.
    """
    if indent is not None and depth(node) > MAX_INDENTED_DEPTH:
        indent = None
    out: list[str] = []
    stack: list[tuple[Any, int] | str] = [(node, 0)]

    def newline(level: int) -> str:
        return "\n" + " " * (indent * level) if indent is not None else ""

    item_sep = "," if indent is not None else ", "
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        value, level = item
        if isinstance(value, Node):
            value = _node_fields(value)
        if isinstance(value, dict):
            if not value:
                out.append("{}")
                continue
            out.append("{")
            stack.append(newline(level) + "}")
            entries = list(value.items())
            for i in range(len(entries) - 1, -1, -1):
                key, val = entries[i]
                stack.append((val, level + 1))
                stack.append((item_sep if i else "") + newline(level + 1) + json.dumps(key) + ": ")
        elif isinstance(value, list):
            if not value:
                out.append("[]")
                continue
            out.append("[")
            stack.append(newline(level) + "]")
            for i in range(len(value) - 1, -1, -1):
                stack.append((value[i], level + 1))
                stack.append((item_sep if i else "") + newline(level + 1))
        else:
            out.append(json.dumps(value, allow_nan=False))
    return "".join(out)


def _label(node: Node) -> str:
    if isinstance(node, Concept):
        text = f"Concept {format_concept(node)}"
    elif isinstance(node, Weighted):
        text = f"Weighted {format_number(node.weight)}"
    elif isinstance(node, Definition):
        text = f"Definition {node.name}"
    elif isinstance(node, Program):
        text = "Program"
    else:
        text = type(node).__name__
    if node.span.line:
        text += f"  @{node.span.line}:{node.span.column}"
    return text


def format_tree(node: Node, max_depth: int | None = None) -> str:
    """An indented tree, one node per line, with its position (``@line:column``).

    Below ``max_depth`` levels a subtree is summarised in one line (deep trees would otherwise
    print quadratically many indentation characters).
    """
    lines: list[str] = []
    # (node, prefix for this line, prefix for its children, depth)
    stack: list[tuple[Node, str, str, int]] = [(node, "", "", 0)]
    while stack:
        current, head, rest, level = stack.pop()
        kids = current._children()
        if isinstance(current, Program) and not current.definitions:
            kids = (current.body,)
        if max_depth is not None and level >= max_depth and kids:
            count = sum(1 for _ in _iter_nodes(current))
            lines.append(f"{head}{_label(current)} ... ({count - 1} more nodes below; raise --max-depth)")
            continue
        lines.append(head + _label(current))
        for i in range(len(kids) - 1, -1, -1):
            last = i == len(kids) - 1
            stack.append((kids[i], rest + ("└── " if last else "├── "), rest + ("    " if last else "│   "), level + 1))
    return "\n".join(lines)


def _iter_nodes(root: Node):
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node._children())
