"""ConceptLang: a language and compiler for compositional visual generation with energy-based models.

    >>> from conceptlang import parse, unparse
    >>> unparse(parse("(male & smiling) | ~black_hair"))
    'male & smiling | ~black_hair'

The torch-based stages (``compile``, ``sample``, ``infer``) are imported lazily so that the
language alone (``parse``, ``unparse``, ``evaluate``) loads without torch.
"""

from __future__ import annotations

from conceptlang.errors import (
    CompileError,
    ConceptLangError,
    DataError,
    ExpressionError,
    ModelError,
    NameResolutionError,
    ParseError,
    SamplingError,
)
from conceptlang.lazy import lazy_attributes

__version__ = "0.1.0"

# name -> the module it is imported from on first access (PEP 562).
_LAZY = {
    "parse": "conceptlang.syntax",
    "parse_expr": "conceptlang.syntax",
    "unparse": "conceptlang.syntax",
    "evaluate": "conceptlang.syntax",
    "compile": "conceptlang.compiler",
    "EnergyGraph": "conceptlang.compiler",
    "sample": "conceptlang.sampling",
    "load_registry": "conceptlang.models.registry",
    "infer": "conceptlang.inference.inference",
}

__all__ = [
    "CompileError",
    "ConceptLangError",
    "DataError",
    "ExpressionError",
    "ModelError",
    "NameResolutionError",
    "ParseError",
    "SamplingError",
    *_LAZY,
]


__getattr__ = lazy_attributes(__name__, _LAZY)
