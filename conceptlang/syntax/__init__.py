"""The ConceptLang language: parsing, printing, boolean semantics and rewrite passes.

No torch here: ``conceptlang parse`` and ``conceptlang check`` stay fast.
"""

from conceptlang.syntax.ast import NO_SPAN, And, Concept, Definition, Expr, Not, Or, Program, Span, Weighted
from conceptlang.syntax.parser import parse, parse_expr
from conceptlang.syntax.printer import InvalidTreeError, format_number, unparse

__all__ = [
    "NO_SPAN",
    "And",
    "Concept",
    "Definition",
    "Expr",
    "InvalidTreeError",
    "Not",
    "Or",
    "Program",
    "Span",
    "Weighted",
    "format_number",
    "parse",
    "parse_expr",
    "unparse",
]
