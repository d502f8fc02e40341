"""The small interface through which the compiler reaches models (docs/design.md, "Layers").

The compiler never imports ``conceptlang.models``; it talks to anything that satisfies
:class:`ConceptRegistry`, and evaluates leaves through :class:`ConceptModel`. The shipped
registry (``conceptlang.models.registry``) and the analytic Gaussian registry used by tests both
implement these protocols.

Conventions
-----------
* Images are float tensors ``(N, C, H, W)`` in the data range [-1, 1].
* A :data:`Condition` is a mapping family → value: a value name for a discrete family
  (``{"color": "red"}``) or a tuple of floats for a continuous one (``{"position": (0.3, 0.7)}``).
  The empty mapping is the unconditional (prior) condition.
* ``sigma`` is ``None`` for models that are not noise-conditional, else a ``(N,)`` tensor.
* ``energy`` is lower for images that fit. ``score`` is ∇ₓ log p = −∇ₓ E at that noise level.
  Explicit models get ``score`` by autograd; implicit (noise-predicting) models return
  −ε̂/σ, and their ``energy`` is the seeded denoising-loss estimate (docs/design.md, "Model kinds").

Optional hooks (used when present, never required): ``model.to(device)`` moves a model's weights
before sampling on that device; ``model.sha256`` / ``model.file`` or a manifest ``model.entry``
dict with those keys are copied into the ``conceptlang sample`` JSON sidecar; a registry's
``sampler_settings`` may carry ``"alpha"`` (the measured negation strength), ``"and_mode"``
(the measured AND semantics) and ``"negation"`` (how ``~c`` is lowered), each used when the caller sets none,
and the sampler keys listed in docs/compiler.md.
A registry's ``finisher(domain)`` returns ``(model, level)``, the domain's finishing model and the noise
level below which its unconditional score alone denoises every chain, or None (docs/design.md,
"Finishing model").
A registry's ``joint(refs)`` returns ``(model, condition)`` for one model that scores all of
``refs`` at once (a joint model conditioned on every one of them), or None; ``and_mode="joint"``
uses it and falls back to separate terms without it.
Two hooks serve ``negation="complement"`` (docs/compiler.md, "Negation"): a registry's
``absent(ref)`` returns the known-absent :class:`ConceptRef` of a yes/no attribute when its model
was trained on that value (else None; without the hook such negations keep the ratio form), and
``value_shares(domain, families, given)`` returns the data's share of each combination of values of
``families`` among examples where every ref of ``given`` holds, as {tuple of values: share} (None
in a tuple: no value of that family holds, a yes/no attribute absent), or None
(without it, or with None, the complement's values get equal shares); with ``joint=True`` each
share is of all the data (the probability of the combination *and* ``given``), which a
data-weighted OR over named places needs (a registry without that keyword draws such ORs in equal
shares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Protocol, Sequence, runtime_checkable

import torch

Condition = Mapping[str, "str | tuple[float, ...]"]


@dataclass(frozen=True)
class Drawn:
    """Condition value "drawn per chain": a continuous family's parameters, or a discrete family's
    value, that the sampler draws for each chain from the data (what a ``ConceptRef(drawn=True)``
    conditions on). A model encodes it as the null slot, its own marginal over the family; the
    sampler fills in each chain's draw (see
    :meth:`conceptlang.compiler.graph.EnergyGraph.chain_conditions`).

    ``near``: drawn among the data whose parameters lie within the language's tolerance of these
    (a named position spread over the region where it holds); None: among all the data given the
    other values. ``values``: set for a discrete family, its value names in order (a draw is an
    index into them); None for a continuous one.
    ``objects``: drawn as one object of the data's images with this many objects (object-level
    composition: ``position(a) & position(b)`` draws each object's shape, colour and size).
    ``away``: with ``near``, drawn among the data whose parameters lie *outside* that tolerance
    (``~position(x, y)`` lowered to its complement).
    ``avoid``: with ``near`` (not ``away``), points (one after another) that the draws also keep
    away from, beyond the tolerance of each (``position(a) & ~position(b)`` with ``b`` close to
    ``a``: drawn near ``a`` where ``b`` does not hold); empty for none.
    ``layout``, ``slot``, ``within``: object ``slot`` of an object-level composition whose objects
    are drawn together, as one image of the data with an object within ``within`` of each of these
    points (one after another, in the objects' order) has them; every drawn family of the objects'
    leaves carries the same ``layout``. Empty: drawn on its own. ``some``: (family, value) pairs
    that some object of the layout holds (``position(a) & position(b) & red``); ``none``: those
    that no object holds (``position(a) & position(b) & ~red``)."""

    near: tuple[float, ...] | None = None
    values: tuple[str, ...] | None = None
    objects: int = 1
    away: bool = False
    avoid: tuple[float, ...] = ()
    layout: tuple[float, ...] = ()
    slot: int = 0
    within: float = 0.0
    some: tuple[tuple[str, str], ...] = ()
    none: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        if self.layout:  # the values held and kept off are part of which layouts are drawn
            held = "".join(f", {what}={pairs}" for what, pairs in (("some", self.some), ("none", self.none)) if pairs)
            return f"DRAWN(object {self.slot} of the layout within {self.within:g} of {self.layout}{held})"
        if self.values is not None:
            return "DRAWN(" + "|".join(self.values) + (f", objects={self.objects})" if self.objects != 1 else ")")
        if self.near is None:
            return "DRAWN"
        if self.away:
            return f"DRAWN(away={self.near})"
        return f"DRAWN(near={self.near}, avoid={self.avoid})" if self.avoid else f"DRAWN(near={self.near})"


def held_values(some: Sequence[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """A layout draw's ``given`` (the registry's ``value_draws`` with ``near`` for every object):
    family → the values some object of the layout holds, from ``Drawn.some``'s pairs; its
    ``excluded`` likewise from ``Drawn.none``'s."""
    out: dict[str, tuple[str, ...]] = {}
    for family, value in some:
        out[family] = out.get(family, ()) + (value,)
    return out


DRAWN = Drawn()
ModelKind = Literal["explicit", "implicit"]


@dataclass(frozen=True)
class ConceptRef:
    """A concept resolved to its place in a domain: ``scenes/color.red`` or ``scenes/position(0.3,0.7)``.

    ``absent=True`` (made only by the compiler's complement lowering of ``~c``, never by name
    resolution) is the known-absent value of the yes/no attribute ``value``: "not smiling" as one
    condition of the model, not a repulsion from "smiling" (a registry's ``absent`` hook).
    ``drawn=True`` (also made only by the compiler, under ``free_families="data"``) is a continuous
    family whose parameters each chain draws from the data at sampling time (``position(drawn)``:
    every chain its own place; with ``params``, among the data where the named point holds), or a
    discrete family whose value each object of an object-level composition draws (``shape(drawn)``).
    ``away=True`` with ``drawn`` and ``params`` (the complement lowering of ``~position(x, y)``):
    drawn among the data where the named point does *not* hold; ``points`` > 1: ``params`` holds
    that many points one after another, and none of them holds (``~position(a) & ~position(b)``).
    With ``drawn`` and ``params`` but not ``away``, ``points`` > 1 is one object near every one of
    the points (the region of ``position(a) | position(b)`` where both hold), and ``avoid`` holds
    points (one after another) the place is drawn away from (``position(a) & ~position(b)``, ``b``
    close to ``a``).
    """

    domain: str
    family: str
    value: str | None = None
    params: tuple[float, ...] | None = None
    absent: bool = False
    drawn: bool = False
    away: bool = False
    points: int = 1
    avoid: tuple[float, ...] = ()

    @property
    def qualified(self) -> str:
        if self.absent:
            return f"{self.family}.<none>"
        if self.drawn:
            where = " away from " if self.away else " near "
            near = "" if self.params is None else where + self.points_text()
            if self.avoid:
                near += " away from " + self.avoid_text()
            return f"{self.family}(drawn{near})"
        if self.params is not None:
            return f"{self.family}({', '.join(repr(p) for p in self.params)})"
        return f"{self.family}.{self.value}"

    def point_groups(self) -> list[tuple[float, ...]]:
        """``params`` as its ``points`` points: [(0.3, 0.3)], or [(0.3, 0.3), (0.7, 0.7)] for 2."""
        params = tuple(self.params or ())
        k = max(len(params) // max(self.points, 1), 1)
        return [params[i:i + k] for i in range(0, len(params), k)]

    def points_text(self) -> str:
        """The named point(s) of ``params``: "0.3, 0.3", or "0.3, 0.3; 0.7, 0.7" for ``points`` 2."""
        return "; ".join(", ".join(repr(p) for p in q) for q in self.point_groups())

    def avoid_text(self) -> str:
        """The points of ``avoid`` in the same form: "0.6, 0.7", or "0.6, 0.7; 0.5, 0.5"."""
        k = max(len(self.point_groups()[0]), 1)
        return "; ".join(", ".join(repr(p) for p in self.avoid[i:i + k]) for i in range(0, len(self.avoid), k))


@runtime_checkable
class ConceptModel(Protocol):
    name: str
    domain: str
    kind: ModelKind
    noise_conditional: bool
    image_shape: tuple[int, int, int]  # (C, H, W)

    def encode(self, conditions: Sequence[Condition]) -> torch.Tensor:
        """Stack conditions into the model's condition tensor, (L, D)."""

    def energy(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """(N, C, H, W), (N, D), (N,)|None → (N,)"""

    def score(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """(N, C, H, W), (N, D), (N,)|None → (N, C, H, W)"""


@runtime_checkable
class ConceptRegistry(Protocol):
    def candidates(self, name: str, family: str | None = None) -> list[ConceptRef]:
        """Every concept a (bare or qualified) name could mean; empty when unknown."""

    def known_names(self) -> list[str]:
        """All resolvable names, bare and qualified, for "did you mean" suggestions."""

    def model_for(self, ref: ConceptRef) -> tuple[ConceptModel, Condition]:
        """The model that scores ``ref`` and the condition to give it."""

    def prior(self, domain: str) -> tuple[ConceptModel, Condition]:
        """The domain's unconditional model (grounds a bare negation)."""

    def domain(self, name: str):
        """The :class:`conceptlang.data.domain.Domain` description (families, exclusivity)."""

    def sampler_settings(self, models: Sequence[ConceptModel]) -> dict:
        """Tuned sampler settings for a composition of these models (most conservative wins)."""
