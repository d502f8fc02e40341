"""The energy graph's parts: leaves, inner nodes, DNF disjuncts and negation groundings.

Plain frozen records shared by lowering (:mod:`conceptlang.compiler.lower`), the graph
(:mod:`conceptlang.compiler.graph`) and its reports (:mod:`conceptlang.compiler.explain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conceptlang.interface import ConceptModel, ConceptRef, Condition


@dataclass(frozen=True)
class Leaf:
    """One (model, condition) pair. ``ref`` is the concept it scores; a joint leaf (and_mode
    "joint") scores several concepts at once, listed in ``refs`` (its ``ref`` is None); both are
    empty for the domain prior."""

    index: int
    ref: ConceptRef | None
    model: ConceptModel = field(compare=False)
    condition: Condition = field(compare=False)
    key: str = ""
    refs: tuple[ConceptRef, ...] = ()

    @property
    def label(self) -> str:
        if self.refs:
            return " & ".join(r.qualified for r in self.refs)
        return "prior" if self.ref is None else self.ref.qualified


@dataclass(frozen=True)
class LeafNode:
    leaf: int


@dataclass(frozen=True)
class SumNode:
    """Σ coef · child."""

    terms: tuple[tuple[float, int], ...]  # (coefficient, node id)


@dataclass(frozen=True)
class LseNode:
    """−τ · logsumexp_i(−E_i/τ − offset_i): a mixture of the children."""

    children: tuple[int, ...]
    offsets: tuple[float, ...]
    tau: float


Node = LeafNode | SumNode | LseNode


@dataclass(frozen=True)
class Disjunct:
    """One product of experts of the exact DNF-mixture route: Σ coef · leaf, drawn with ``share``."""

    coefs: tuple[float, ...]  # one per leaf
    log_weight: float  # log of the unnormalised share
    text: str
    share: float = 0.0
    # the coefficients below the graph's ``weights_above`` noise level (concepts as written), or None
    low_coefs: tuple[float, ...] | None = None
    # the branch of the expression's OR(s) as written that this disjunct belongs to ("red", or
    # "red & circle" for two ORs); None where the expression has no OR as written and the disjuncts
    # only enumerate free families
    group: str | None = None
    group_rank: tuple[int, ...] = ()  # where ``group`` stands in the written order (for listing groups)


@dataclass(frozen=True)
class Grounding:
    """How one negation was lowered and grounded (reported by explain).

    ``how``: ``"ratio"`` (the paper's form, E[positive part] − α·E[negated]), ``"complement"`` (the
    mixture of the family's other values; ``detail`` lists them with their shares), ``"absent"``
    (the attribute's known-absent value in the condition), ``"away"`` (a named place: each chain's
    place drawn from the data where it does not hold), ``"avoid"`` (a named place close to a
    positive one: each chain's place drawn where that one holds and this one does not) or
    ``"implied"`` (a positive value of the
    same exclusive family already excludes it)."""

    negated: str
    grounded_by: str  # "positive part" | "prior"
    positive: str
    alpha: float
    node: int = -1  # the conjunction's node id
    child: int = -1  # the negated sub-expression's node id
    how: str = "ratio"
    detail: str = ""

    def describe(self) -> str:
        if self.how == "complement":
            return f"~{self.negated}: lowered to the complement, the mixture {self.detail}"
        if self.how == "away":
            return (f"~{self.negated}: lowered to the complement, the place drawn per chain from the data where "
                    f"it does not hold ({self.detail})")
        if self.how == "avoid":
            return (f"~{self.negated}: lowered with the named place beside it, drawn per chain from the data "
                    f"where that place holds and this one does not ({self.detail})")
        if self.how == "absent":
            return (f"~{self.negated}: lowered to the attribute's known-absent value {self.detail} "
                    "in the condition (a value the model was trained on)")
        if self.how == "implied":
            return f"~{self.negated}: implied by {self.detail}, so dropped"
        if self.grounded_by == "prior":
            return (f"~{self.negated}: no positive term beside it, so it is grounded by the domain prior "
                    f"(E_prior − {self.alpha:g}·E[{self.negated}]; ratio form)")
        return (f"~{self.negated}: grounded by the positive part of its conjunction, {self.positive} "
                f"(E[{self.positive}] − {self.alpha:g}·E[{self.negated}]; ratio form)")
