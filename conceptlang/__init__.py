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
    ModelError,
    NameResolutionError,
    ParseError,
    SamplingError,
)

__version__ = "0.1.0"

# name -> (module, attribute); resolved on first access (PEP 562).
_LAZY = {
    "parse": ("conceptlang.syntax", "parse"),
    "parse_expr": ("conceptlang.syntax", "parse_expr"),
    "unparse": ("conceptlang.syntax", "unparse"),
    "evaluate": ("conceptlang.syntax", "evaluate"),
    "compile": ("conceptlang.compiler", "compile"),
    "EnergyGraph": ("conceptlang.compiler", "EnergyGraph"),
    "sample": ("conceptlang.sampling", "sample"),
    "load_registry": ("conceptlang.models.registry", "load_registry"),
    "infer": ("conceptlang.inference.inference", "infer"),
}

__all__ = [
    "CompileError",
    "ConceptLangError",
    "DataError",
    "ModelError",
    "NameResolutionError",
    "ParseError",
    "SamplingError",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'conceptlang' has no attribute {name!r}")
