"""The ConceptLang abstract syntax tree: frozen dataclasses with source positions.

Positions (``span``) are excluded from equality and hashing, so two trees that differ only in
where they came from compare equal; round-trip tests rely on that. Chains are n-ary:
``a & b & c`` is one :class:`And` with three terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Span:
    """Where a node starts in the source: 1-based line and column, and 0-based offsets."""

    line: int = 0
    column: int = 0
    start: int = 0
    end: int = 0


NO_SPAN = Span()


@dataclass(frozen=True)
class Concept:
    """A concept reference: ``smiling``, ``color.red`` or ``position(0.3, 0.7)``.

    ``family`` is None for a bare name. ``args`` is None when the concept has no argument list
    (``position`` and ``position()`` differ: the latter has ``args == ()``).
    """

    name: str
    family: str | None = None
    args: tuple[float, ...] | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    @property
    def qualified(self) -> str:
        return f"{self.family}.{self.name}" if self.family else self.name


@dataclass(frozen=True)
class Not:
    expr: "Expr"
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class And:
    terms: tuple["Expr", ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Or:
    terms: tuple["Expr", ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Weighted:
    """``weight * expr``: scales the energy of ``expr`` (sharpens for weight > 1)."""

    weight: float
    expr: "Expr"
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Expr = Union[Concept, Not, And, Or, Weighted]


@dataclass(frozen=True)
class Definition:
    """``name = expr;`` — expanded by the compiler, never by the parser."""

    name: str
    expr: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Program:
    definitions: tuple[Definition, ...]
    body: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
