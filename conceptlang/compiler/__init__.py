"""The compiler: concept expressions → energy graphs over concept models.

    >>> from conceptlang.compiler import compile
    >>> from conceptlang.models.analytic import GaussianRegistry
    >>> graph = compile("color.red & ~shape.square", GaussianRegistry())
    >>> print(graph.explain())  # doctest: +SKIP

The compiler reaches models only through :mod:`conceptlang.interface`.
"""

from conceptlang.compiler.checks import SAMPLER_NEEDS, check_sampler
from conceptlang.compiler.compile import MAX_DEPTH, UnsatisfiableWarning, compile
from conceptlang.compiler.graph import EnergyGraph
from conceptlang.compiler.nodes import Disjunct, Grounding, Leaf
from conceptlang.compiler.options import CompileOptions
from conceptlang.compiler.select import ModelSetWarning
from conceptlang.interface import ConceptModel, ConceptRef, ConceptRegistry, Condition

__all__ = [
    "compile",
    "EnergyGraph",
    "CompileOptions",
    "Leaf",
    "Disjunct",
    "Grounding",
    "UnsatisfiableWarning",
    "ModelSetWarning",
    "SAMPLER_NEEDS",
    "check_sampler",
    "MAX_DEPTH",
    "ConceptModel",
    "ConceptRef",
    "ConceptRegistry",
    "Condition",
]
