"""The ConceptLang abstract syntax tree: frozen dataclasses with source positions.

Positions (``span``) are excluded from equality and hashing, so two trees that differ only in
where they came from compare equal; round-trip tests rely on that. Chains are n-ary:
``a & b & c`` is one :class:`And` with three terms.

Equality, hashing and ``repr`` are implemented iteratively (explicit stacks, hash cached per
node), because the parser accepts 10,000 levels of nesting and the dataclass-generated methods
would recurse once per level and hit Python's recursion limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from conceptlang.errors import SourceLocation


@dataclass(frozen=True)
class Span:
    """Where a node starts in the source: 1-based line and column, and 0-based offsets.

    ``source`` is the whole text the node was parsed from (one shared string), so later stages
    (name resolution in the compiler, the evaluator) can show the offending line with a caret.
    """

    line: int = 0
    column: int = 0
    start: int = 0
    end: int = 0
    source: str = field(default="", compare=False, repr=False)

    def location(self) -> SourceLocation | None:
        """The span as a :class:`SourceLocation` for error messages; None for synthetic nodes."""
        if self.line <= 0:
            return None
        return SourceLocation(self.line, self.column, self.source)

    def describe(self) -> str:
        """``"line 1, column 5"`` or ``""`` for nodes that were not parsed from text."""
        return f"line {self.line}, column {self.column}" if self.line > 0 else ""


NO_SPAN = Span()

MAX_REPR_CHARS = 100_000


class Node:
    """Base of every AST node: structural, iterative ``==``, ``hash`` and ``repr``."""

    __slots__ = ()

    # Subclasses define: _key() -> non-child fields compared with ==; _children() -> child nodes.
    def _key(self) -> tuple:  # pragma: no cover - overridden
        raise NotImplementedError

    def _children(self) -> tuple:  # pragma: no cover - overridden
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Node):
            return NotImplemented
        stack: list[tuple[Node, Node]] = [(self, other)]
        while stack:
            a, b = stack.pop()
            if a is b:
                continue
            if type(a) is not type(b):
                return False
            ha = a.__dict__.get("_hash")
            hb = b.__dict__.get("_hash")
            if ha is not None and hb is not None and ha != hb:
                return False
            if a._key() != b._key():
                return False
            ca, cb = a._children(), b._children()
            if len(ca) != len(cb):
                return False
            stack.extend(zip(ca, cb))
        return True

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is not None:
            return cached
        # Post-order over the nodes whose hash is not cached yet.
        stack: list[tuple[Node, bool]] = [(self, False)]
        while stack:
            node, ready = stack.pop()
            if "_hash" in node.__dict__:
                continue
            kids = node._children()
            if ready:
                h = hash((type(node).__name__, node._key(), tuple(k.__dict__["_hash"] for k in kids)))
                object.__setattr__(node, "_hash", h)
            else:
                stack.append((node, True))
                stack.extend((k, False) for k in kids if "_hash" not in k.__dict__)
        return self.__dict__["_hash"]

    def __getstate__(self) -> dict[str, Any]:
        # The cached hash depends on the process's string-hash seed; never carry it across.
        state = dict(self.__dict__)
        state.pop("_hash", None)
        return state

    def __repr__(self) -> str:
        # Truncated: a DAG from expand_definitions can unfold to astronomically many nodes.
        out: list[str] = []
        length = 0
        stack: list[Any] = [self]
        while stack:
            if length > MAX_REPR_CHARS:
                out.append("...")
                break
            item = stack.pop()
            if isinstance(item, str):
                out.append(item)
                length += len(item)
                continue
            name = type(item).__name__
            if isinstance(item, Concept):
                parts = [f"name={item.name!r}"]
                if item.family is not None:
                    parts.append(f"family={item.family!r}")
                if item.args is not None:
                    parts.append(f"args={item.args!r}")
                out.append(f"{name}({', '.join(parts)})")
                length += len(out[-1])
                continue
            out.append(f"{name}(")
            length += len(name) + 1
            stack.extend(reversed(item._repr_parts()))
        return "".join(out)

    def _repr_parts(self) -> list:  # pragma: no cover - overridden
        """Strings and child nodes to emit, in order, after ``Name(``."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False, repr=False)
class Concept(Node):
    """A concept reference: ``smiling``, ``color.red`` or ``position(0.3, 0.7)``.

    ``family`` is None for a bare name. ``args`` is None when the concept has no argument list
    (``position`` and ``position()`` differ: the latter has ``args == ()``).
    """

    name: str
    family: str | None = None
    args: tuple[float, ...] | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.args is not None and not isinstance(self.args, tuple):
            object.__setattr__(self, "args", tuple(self.args))

    @property
    def qualified(self) -> str:
        return f"{self.family}.{self.name}" if self.family else self.name

    def _key(self) -> tuple:
        return (self.name, self.family, self.args)

    def _children(self) -> tuple:
        return ()


@dataclass(frozen=True, eq=False, repr=False)
class Not(Node):
    expr: "Expr"
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def _key(self) -> tuple:
        return ()

    def _children(self) -> tuple:
        return (self.expr,)

    def _repr_parts(self) -> list:
        return ["expr=", self.expr, ")"]


@dataclass(frozen=True, eq=False, repr=False)
class And(Node):
    terms: tuple["Expr", ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.terms, tuple):
            object.__setattr__(self, "terms", tuple(self.terms))

    def _key(self) -> tuple:
        return (len(self.terms),)

    def _children(self) -> tuple:
        return self.terms

    def _repr_parts(self) -> list:
        return ["terms=", *_tuple_parts(self.terms), ")"]


@dataclass(frozen=True, eq=False, repr=False)
class Or(Node):
    terms: tuple["Expr", ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.terms, tuple):
            object.__setattr__(self, "terms", tuple(self.terms))

    def _key(self) -> tuple:
        return (len(self.terms),)

    def _children(self) -> tuple:
        return self.terms

    def _repr_parts(self) -> list:
        return ["terms=", *_tuple_parts(self.terms), ")"]


@dataclass(frozen=True, eq=False, repr=False)
class Weighted(Node):
    """``weight * expr``: scales the energy of ``expr`` (sharpens for weight > 1).

    Boolean meaning: the sign carries it, the magnitude does not. ``w * e`` holds when ``e``
    holds for ``w >= 0`` and when ``e`` does not hold for ``w < 0`` (a negative weight
    subtracts the energy, exactly as ``~`` does inside a conjunction).
    """

    weight: float
    expr: "Expr"
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def _key(self) -> tuple:
        return (self.weight,)

    def _children(self) -> tuple:
        return (self.expr,)

    def _repr_parts(self) -> list:
        return [f"weight={self.weight!r}, expr=", self.expr, ")"]


Expr = Union[Concept, Not, And, Or, Weighted]


@dataclass(frozen=True, eq=False, repr=False)
class Definition(Node):
    """``name = expr;`` — expanded by the compiler, never by the parser."""

    name: str
    expr: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def _key(self) -> tuple:
        return (self.name,)

    def _children(self) -> tuple:
        return (self.expr,)

    def _repr_parts(self) -> list:
        return [f"name={self.name!r}, expr=", self.expr, ")"]


@dataclass(frozen=True, eq=False, repr=False)
class Program(Node):
    definitions: tuple[Definition, ...]
    body: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.definitions, tuple):
            object.__setattr__(self, "definitions", tuple(self.definitions))

    def _key(self) -> tuple:
        return (len(self.definitions),)

    def _children(self) -> tuple:
        return (*self.definitions, self.body)

    def _repr_parts(self) -> list:
        return ["definitions=", *_tuple_parts(self.definitions), ", body=", self.body, ")"]


EXPR_TYPES = (Concept, Not, And, Or, Weighted)


def _tuple_parts(items: tuple) -> list:
    """Emission items for a tuple literal of nodes, as Python writes it (``(a,)``, ``(a, b)``)."""
    parts: list = ["("]
    for i, item in enumerate(items):
        if i:
            parts.append(", ")
        parts.append(item)
    parts.append(",)" if len(items) == 1 else ")")
    return parts
