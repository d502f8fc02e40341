"""Compile options and their documented defaults (docs/compiler.md, "Options")."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

from conceptlang.errors import CompileError
from conceptlang.syntax.semantics import POSITION_TOLERANCE

AND_MODES = ("sum", "product", "joint")
OR_MODES = ("auto", "dnf", "lse")
NEGATION_MODES = ("ratio", "complement")
FREE_FAMILY_MODES = ("model", "discrete", "data")
NAMED_POSITION_MODES = ("point", "data")
OR_WEIGHT_MODES = ("data", "equal")


@dataclass(frozen=True)
class CompileOptions:
    """How an expression becomes energies.

    * ``alpha``: negation strength, ``A & ~B`` → E_A − α·E_B; α ∈ (0, 1], default 0.5 (the
      registry may suggest one via its sampler settings key ``"alpha"``, as the shipped manifests do;
      an explicit option always wins).
    * ``tau``: OR temperature τ > 0 in −τ·logsumexp(−E_i/τ − log Z_i).
    * ``and_mode``: ``"sum"`` (the paper's plain product of experts, default) or ``"product"``
      (corrected for the shared prior: E_prior + Σ s_i (E_i − E_prior)) or ``"joint"`` (as
      ``"product"``, but the positive concepts of a conjunction that one joint model can score
      together become ONE leaf conditioned on all of them — that model's own estimate of
      p(x | c₁, …, c_k) — through the registry's optional ``joint`` hook, a weight w > 0 on one
      adding (w − 1)·(E_c − E_prior) beside it, and one on a conjunction (``2 * (a & ~b)``) one
      such share of its values' joint condition; the rest stay separate terms). The registry may
      suggest a mode via its sampler settings key ``"and_mode"``, and an explicit option always wins.
    * ``negation``: how ``~c`` of a single concept is lowered inside a conjunction. ``"ratio"`` (the
      paper's p(x | A) / p(x | c)^α: a repulsion from c, coefficient −α) or ``"complement"``: a value
      of an exclusive discrete family becomes the mixture (an OR, sampled through the DNF route) of
      the family's other values, weighted as the data has them given the conjunction's positive
      concepts (registry hook ``value_shares``; equal shares without it), and a yes/no attribute
      becomes its known-absent value where the model was trained on one (hook ``absent``). A
      weighted negation (``2 * ~c``, ``-1 * c``) is lowered as the negation. Negated compound
      sub-expressions and concepts with no such lowering keep the ratio form. The registry may
      suggest a mode via its sampler settings key ``"negation"``; an explicit option always wins.
      Default ``"ratio"`` (docs/compiler.md, "Negation").
    * ``free_families``: ``"model"`` (default: the discrete families a conjunction leaves free are
      whatever the model draws) or ``"data"``: with ``and_mode="joint"``, a conjunction of plain
      concepts (and single-concept negations) of one joint model becomes the mixture over the
      values of the families it leaves free, weighted as the data has them given the conjunction
      (law of total probability, p(x | A) = Σ_v p(v | A) p(x | A, v)), each branch one joint leaf.
      Only where the registry gives the data's shares (hook ``value_shares``) and the branches fit
      ``max_disjuncts``; otherwise the families stay the model's, with a notice. ``"data"`` also
      draws the continuous families the conjunction leaves free (scenes ``position``) per chain as
      the data has them given the branch's values (registry hook ``value_draws``; each branch's
      joint condition holds ``position(drawn)``, filled in per chain by the sampler);
      ``"discrete"`` enumerates the discrete families only and leaves continuous ones to the model.
      When the whole expression's DNF outgrows ``max_disjuncts``, the compiler lowers it again with
      the free discrete families left to the model (places and continuous families still drawn),
      then with ``"model"``, with a notice.
    * ``named_positions``: ``"point"`` (default: ``position(x, y)`` conditions the model on the exact
      point) or ``"data"``: with ``free_families="data"``, a conjunction's named position is drawn
      per chain from the data where it holds (centre within the language's 0.1 of the point, given
      the branch's other values; ``position(drawn near x, y)``), so its samples spread over the
      region the boolean semantics accepts, as the data does. An object-level composition
      (``position(a) & position(b)`` under ``free_families="data"``) draws each object's centre
      the same way, and so do the ``"sum"`` and ``"product"`` modes a positive named position's
      own leaf (given nothing else: there each concept has its own model). A negated place within
      twice the tolerance of a conjunction's named one keeps that one's draws away from it
      (``position(a) & ~position(b)``: ``position(drawn near a away from b)``); with ``"point"``
      it is a ratio-form repulsion.
    * ``named_radius``: the radius that ``named_positions="data"`` spreads a named position over:
      a number in (0, 0.1], or None (default) for the language's tolerance 0.1. A smaller radius
      keeps the samples' centres further inside the region where the position holds.
    * ``or_mode``: ``"auto"`` (exact DNF-mixture route when the disjunctive normal form exists and has
      at most ``max_disjuncts`` disjuncts, else log-sum-exp with a notice), ``"dnf"`` (require it) or
      ``"lse"`` (always log-sum-exp energies; explicit models only).
    * ``or_weights``: how the branches of an OR are weighted. ``"data"`` (default): the expression's
      OR is rewritten as the mixture over the combinations of values of the discrete families its
      literals name that make it true, each drawn with its probability in the training data
      (registry hook ``value_shares``): p(x | A ∨ B) = Σ_c p(c | A ∨ B) p(x | c). The branches are
      disjoint, so a region that satisfies both A and B is not counted twice; a weight on the OR
      (``2 * (a | b)``) or on a compound inside it weights the values each branch pins. A branch
      naming two values of an exclusive family has probability 0 and is not drawn. Where that does
      not apply (no ``value_shares`` or no data for the families, two named places in one branch
      (two objects), places closer than twice the position tolerance where their regions are not
      drawn (``named_positions="point"``, a registry that cannot draw them),
      a negation inside the OR with ``negation="ratio"``, a user-given ``log_z``, τ ≠ 1, or more
      than ``max_disjuncts`` branches), the OR's branches get equal shares, with a notice saying
      why. ``"equal"``: always equal shares (the paper's equal log Z; the lowering as written).
    * ``log_z``: ``"equal"`` (every branch's log Z taken as equal — the paper's assumption) or a
      sequence of log Z values, one per branch of the top-level OR.
    * ``concept_weights``: apply the registry's calibrated concept weights (its optional
      ``concept_weight(ref)`` hook: a concept with weight w is scored as E_prior + w·(E_c − E_prior)
      in the product and joint modes, w·E_c in the sum mode, wherever it appears); False scores
      every concept with weight 1, as written.
    * ``finish``: hand the last noise levels to the domain's finishing model where the registry
      has one (its optional ``finisher(domain)`` hook, manifest ``finish_below``): below that level
      the model's unconditional score alone denoises every chain; False composes to the end.
    * ``strict``: an unsatisfiable expression, one the models in use were not trained for (more
      objects than their training images held: :mod:`conceptlang.compiler.select`), or values
      beside several places that no layout of the data holds, is an error instead of a warning.
    * ``max_disjuncts``: the most branches the exact DNF mixture may have (default 512); a chain
      evaluates only its own branch, so the bound limits the graph and the compile time, not the
      cost per sample.
    * ``domain``: pin name resolution to one domain.
    * ``sampler``: check at compile time that this sampler suits the models.
    """

    alpha: float = 0.5
    tau: float = 1.0
    and_mode: str = "sum"
    or_mode: str = "auto"
    negation: str = "ratio"
    free_families: str = "model"
    named_positions: str = "point"
    named_radius: float | None = None
    or_weights: str = "data"
    log_z: Any = "equal"
    max_disjuncts: int = 512
    strict: bool = False
    concept_weights: bool = True
    finish: bool = True
    domain: str | None = None
    sampler: str | None = None

    def validated(self) -> "CompileOptions":
        alpha = _number("alpha", self.alpha)
        if not (0.0 < alpha <= 1.0):
            raise CompileError(f"alpha must be in (0, 1], got {alpha!r}")
        tau = _number("tau", self.tau)
        if not tau > 0.0:
            raise CompileError(f"tau (the OR temperature) must be > 0, got {tau!r}")
        if self.and_mode not in AND_MODES:
            raise CompileError(f"and_mode must be one of {', '.join(AND_MODES)}; got {self.and_mode!r}")
        if self.or_mode not in OR_MODES:
            raise CompileError(f"or_mode must be one of {', '.join(OR_MODES)}; got {self.or_mode!r}")
        if self.negation not in NEGATION_MODES:
            raise CompileError(f"negation must be one of {', '.join(NEGATION_MODES)}; got {self.negation!r}")
        if self.free_families not in FREE_FAMILY_MODES:
            raise CompileError(f"free_families must be one of {', '.join(FREE_FAMILY_MODES)}; got {self.free_families!r}")
        if self.named_positions not in NAMED_POSITION_MODES:
            raise CompileError(f"named_positions must be one of {', '.join(NAMED_POSITION_MODES)}; "
                               f"got {self.named_positions!r}")
        named_radius = self.named_radius
        if named_radius is not None:
            named_radius = _number("named_radius", named_radius)
            if not (0.0 < named_radius <= POSITION_TOLERANCE):
                raise CompileError(f"named_radius must be in (0, {POSITION_TOLERANCE:g}], got {named_radius!r}")
        if self.or_weights not in OR_WEIGHT_MODES:
            raise CompileError(f"or_weights must be one of {', '.join(OR_WEIGHT_MODES)}; got {self.or_weights!r}")
        log_z = self.log_z
        if isinstance(log_z, str):
            if log_z != "equal":
                hint = (" (estimating Z is a sampling option: sample(..., log_z='estimate'), "
                        "CLI --estimate-log-z)" if log_z == "estimate" else "")
                raise CompileError(f"log_z must be 'equal' or a sequence of numbers; got {log_z!r}{hint}")
        else:
            try:
                log_z = tuple(_number("log_z", v) for v in log_z)
            except TypeError:
                raise CompileError(f"log_z must be 'equal' or a sequence of numbers; got {log_z!r}") from None
        if not isinstance(self.max_disjuncts, int) or self.max_disjuncts < 1:
            raise CompileError(f"max_disjuncts must be a positive integer, got {self.max_disjuncts!r}")
        return replace(self, alpha=alpha, tau=tau, log_z=log_z, named_radius=named_radius)

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def near_radius(named_radius: float | None) -> float:
    """The radius a named position is drawn within: ``named_radius``, or the language's tolerance."""
    return named_radius or POSITION_TOLERANCE


def places_apart(p: Sequence[float], q: Sequence[float]) -> bool:
    """Whether the named places ``p`` and ``q`` cannot both hold: points of one dimension whose
    centres are at least twice the language's position tolerance apart, so no point lies within it
    of both."""
    return len(p) == len(q) and math.dist(p, q) >= 2 * POSITION_TOLERANCE


def away_radius(named_radius: float | None) -> float:
    """The radius a negated named position is drawn beyond: the language's tolerance, widened by
    as much as ``named_radius`` narrows the disc of a named one (a margin for the model's placement
    errors on both sides of the boundary)."""
    return 2 * POSITION_TOLERANCE - near_radius(named_radius)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise CompileError(f"{name} must be a number, got {value!r}") from None
    value = float(value)
    if not math.isfinite(value):
        raise CompileError(f"{name} must be finite, got {value!r}")
    return value


def make_options(**kwargs: Any) -> CompileOptions:
    known = {f.name for f in fields(CompileOptions)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise CompileError(f"unknown compile option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return CompileOptions(**{k: v for k, v in kwargs.items() if v is not None or k in ("domain", "sampler")}).validated()
