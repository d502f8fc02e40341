"""The ConceptLang language: parsing, printing, boolean semantics and rewrite passes.

    >>> from conceptlang.syntax import parse_expr, unparse, evaluate
    >>> e = parse_expr("(male & smiling) | ~black_hair")
    >>> unparse(e)
    'male & smiling | ~black_hair'
    >>> evaluate(e, {"male": False, "smiling": True, "black_hair": False})
    True

No torch here: ``conceptlang parse`` and ``conceptlang check`` stay fast.
"""

from conceptlang.syntax.ast import NO_SPAN, And, Concept, Definition, Expr, Not, Or, Program, Span, Weighted
from conceptlang.syntax.check import check_text
from conceptlang.syntax.display import format_tree, to_json
from conceptlang.syntax.parser import parse, parse_expr
from conceptlang.syntax.passes import (
    concepts_of,
    definition_errors,
    eliminate_common_subexpressions,
    expand_definitions,
    flatten,
    fold_weights,
    normalise,
    to_nnf,
)
from conceptlang.syntax.printer import InvalidTreeError, format_concept, format_number, unparse
from conceptlang.syntax.semantics import POSITION_TOLERANCE, concept_holds, evaluate
from conceptlang.syntax.walk import depth, postorder, transform, tree_size, with_children

__all__ = [
    "NO_SPAN",
    "POSITION_TOLERANCE",
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
    "check_text",
    "concept_holds",
    "concepts_of",
    "definition_errors",
    "depth",
    "eliminate_common_subexpressions",
    "evaluate",
    "expand_definitions",
    "flatten",
    "fold_weights",
    "format_concept",
    "format_number",
    "format_tree",
    "normalise",
    "parse",
    "parse_expr",
    "postorder",
    "to_json",
    "to_nnf",
    "transform",
    "tree_size",
    "unparse",
    "with_children",
]
