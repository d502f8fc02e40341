"""``sample(graph, n, ...)``: run a sampler on a compiled energy graph.

Settings, most specific first: keyword arguments (CLI flags) > the registry's tuned settings for
the graph's models (``graph.sampler_settings``, the most conservative of its models; for a sampler
of another family than the registry's, only its noise range) > the sampler's defaults. For an OR
compiled to the exact DNF mixture, every chain first draws one disjunct with its share, then
samples that product of experts.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from conceptlang.compiler.checks import check_sampler
from conceptlang.compiler.graph import EnergyGraph
from conceptlang.errors import SamplingError
from conceptlang.interface import Drawn, held_values
from conceptlang.sampling.draws import DRAW_MODES, spread_rows, spread_side
from conceptlang.sampling.samplers import SAMPLERS, get_sampler

MAX_FRAME_CHAINS = 16


@dataclass
class SampleResult:
    images: torch.Tensor  # (N, C, H, W) float in [-1, 1], on the CPU
    settings: dict[str, Any]
    seconds: float
    branches: torch.Tensor | None = None  # (N,) disjunct index per chain (DNF route), else None
    frames: list[torch.Tensor] = field(default_factory=list)  # each (F, C, H, W): first chains over time
    device: str = "cpu"
    acceptance: float | None = None  # MALA only

    @property
    def branch_counts(self) -> list[int] | None:
        if self.branches is None:
            return None
        k = int(self.settings.get("disjuncts", 0)) or int(self.branches.max()) + 1
        return torch.bincount(self.branches, minlength=k).tolist()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → cuda, then mps, then cpu. Asking for an absent accelerator is an error."""
    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SamplingError("device 'cuda' was asked for but no CUDA device is available; use --device cpu or auto")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SamplingError("device 'mps' was asked for but MPS is not available; use --device cpu or auto")
    if not (name == "cpu" or name == "mps" or name.startswith("cuda")):
        raise SamplingError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def _seed_for(seed: int, *stream: int) -> int:
    """Independent 63-bit seeds per stream (chunk, branch draw), stable across runs."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, *stream])
               .generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class _ChainTarget:
    """The composition for one batch of chains: the DAG, or one linear disjunct row per chain."""

    def __init__(self, graph: EnergyGraph, coefs: torch.Tensor | None,
                 chain_conds: dict[int, torch.Tensor] | None = None, low: torch.Tensor | None = None):
        self.graph = graph
        self.coefs = coefs  # (B, L) or None
        self.chain_conds = chain_conds  # per-chain conditions of drawn leaves, or None
        self.low = low  # (B, L): the rows below the graph's weights_above, or None

    def score(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        if self.coefs is None:
            return self.graph.score(x, sigma, self.chain_conds)
        return self.graph.finished(x, sigma, lambda: self.graph.linear_score(
            x, self.graph.coefs_at(self.coefs, self.low, sigma), sigma, self.chain_conds))

    def energy_and_score(self, x: torch.Tensor, sigma: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        coefs = None if self.coefs is None else self.graph.coefs_at(self.coefs, self.low, sigma)
        below = self.graph.finish_rows(sigma)
        if below is None:
            return self.graph.energy_and_score(x, sigma, coefs, self.chain_conds)
        # the composition once for both, and only where some chain is above the finishing level
        pair = None if bool(below.all()) else self.graph.energy_and_score(x, sigma, coefs, self.chain_conds)
        return (self.graph.finished(x, sigma, lambda: pair[0], "energy"),
                self.graph.finished(x, sigma, lambda: pair[1]))


DRAW_STREAM = 0xD7A  # seed stream of the drawn families' per-chain parameters
SPREAD_STREAM = 0x5B7  # seed stream of a spread draw's shared place and shuffle


def draw_chain_values(graph: EnergyGraph, n: int, seed: int, draws: str = "spread",
                      users: dict[int, torch.Tensor] | None = None) -> dict[tuple[int, str], torch.Tensor]:
    """Each chain's parameters for every drawn leaf's families: {(leaf, family): (n, P)}, drawn
    with the graph's ``drawer`` (the registry's ``value_draws``) given that leaf's other values, so
    a chain of the branch ``triangle & large`` is placed where the data places large triangles; a
    named point (``position(drawn near x, y)``) is drawn where it holds: within the compile option
    ``named_radius`` of the point (default the language's position tolerance); a negated one
    (``position(drawn away from x, y)``) beyond :func:`~conceptlang.compiler.options.away_radius`,
    and so are the points a named one avoids (``position(drawn near a away from b)``). A leaf's drawn
    discrete families (one object of an object-level composition) are drawn together, as one
    object of the data has them: (n, 1) value indices each. The leaves of an object-level
    composition whose drawn values carry a layout (``Drawn.layout``) are drawn together, one whole
    layout of the data per chain (:func:`_layout_draws`).
    ``draws``: ``"spread"`` (default) draws a continuous family's values for the chains that use the
    leaf together, so that they cover its region evenly, each still distributed as the data's
    (:mod:`conceptlang.sampling.draws`; where the drawer cannot give side² · m distinct values for
    m chains, a rare combination or a fixed point, its first m); ``"independent"``: independent
    draws. ``users``: leaf → the indices of the chains whose disjunct uses it (the DNF route; None:
    every chain uses every leaf); a leaf's other chains get its values cycled, never read.
    Drawn for all ``n`` chains at once from ``seed``: independent of the batch size. Empty when
    the graph has no drawn leaves or no drawer (its drawn families then stay the model's own)."""
    out: dict[tuple[int, str], torch.Tensor] = {}
    if not graph.drawn_leaves or graph.drawer is None:
        return out
    from conceptlang.compiler.options import away_radius, near_radius

    radius = near_radius(graph.options.get("named_radius"))
    # an object-level composition's leaves, drawn together: by layout and the values held beside it
    layouts: dict[tuple, list[int]] = {}
    for leaf, fams in sorted(graph.drawn_leaves.items()):
        cond = graph.leaves[leaf].condition
        if cond[fams[0]].layout:
            d = cond[fams[0]]
            layouts.setdefault((d.layout, d.some, d.none), []).append(leaf)
            continue
        given = {f: v for f, v in cond.items() if f not in fams}
        label = graph.leaves[leaf].label
        discrete = tuple(f for f in fams if cond[f].values is not None)
        for j, fam in enumerate(f for f in fams if f not in discrete):
            near = cond[fam].near  # a named point: drawn where it holds (away: where it does not)
            if near is None:
                where = {}
            elif cond[fam].away:
                where = {"near": near, "radius": away_radius(graph.options.get("named_radius")), "away": True}
            else:
                where = {"near": near, "radius": radius}
                if cond[fam].avoid:  # and away from these points (a close negated place)
                    where.update(avoid=cond[fam].avoid, avoid_radius=away_radius(graph.options.get("named_radius")))
            chains = None if users is None else users.get(leaf)
            m = n if chains is None else int(chains.numel())
            got = _continuous_draws(graph, fam, given, where, label, max(1, m),
                                    _seed_for(seed, DRAW_STREAM, leaf, j), draws)
            if chains is not None:  # the leaf's chains get its values; the others (cycled) never read theirs
                full = got[torch.arange(n) % got.shape[0]].clone()
                full[chains] = got[:m]
                got = full
            out[(leaf, fam)] = got
        if discrete:
            objects = cond[discrete[0]].objects
            got = graph.drawer(graph.domain, discrete, given, n, _seed_for(seed, DRAW_STREAM, leaf, len(fams)),
                               **({"objects": objects} if objects != 1 else {}))
            vals = _checked_draws(got, ", ".join(discrete), label, n, width=len(discrete))
            for j, fam in enumerate(discrete):
                out[(leaf, fam)] = _value_indices(vals[:, j:j + 1], fam, cond[fam].values)
    for (layout, _, _), leaves in layouts.items():
        out.update(_layout_draws(graph, layout, leaves, n, seed, draws, users))
    _share_places(graph, out, n, users)
    return out


def _share_places(graph: EnergyGraph, out: dict[tuple[int, str], torch.Tensor], n: int,
                  users: dict[int, torch.Tensor] | None) -> None:
    """One object's place, one draw per chain: a leaf that conditions on a named place alone
    (``position(drawn near x, y)``, a weighted place's extra share beside its joint leaf) reads the
    point that the chain's own leaf of more values at the same place drew, so that both pull one
    object towards one point. ``users`` as in :func:`draw_chain_values` (None: every chain uses
    every leaf). In place."""
    by_place: dict[tuple[str, Drawn], list[int]] = {}
    for leaf, fams in graph.drawn_leaves.items():
        cond = graph.leaves[leaf].condition
        for fam in fams:
            d = cond[fam]
            if d.values is None and d.near is not None and not d.layout:  # drawn above, leaf by leaf
                by_place.setdefault((fam, d), []).append(leaf)

    def chains_of(leaf: int) -> torch.Tensor:  # (n,) mask of the chains whose disjunct uses the leaf
        mask = torch.zeros(n, dtype=torch.bool)
        mask[slice(None) if users is None else users[leaf]] = True
        return mask

    for (fam, _), leaves in by_place.items():
        size = {i: len(graph.leaves[i].condition) for i in leaves}
        leaders = sorted(leaves, key=lambda i: (-size[i], i))
        for follower in leaves:
            left = chains_of(follower)
            for leader in (i for i in leaders if size[i] > size[follower]):
                chains = left & chains_of(leader)
                out[(follower, fam)][chains] = out[(leader, fam)][chains]
                left &= ~chains


def _layout_draws(graph: EnergyGraph, layout: tuple[float, ...], leaves: list[int], n: int, seed: int,
                  draws: str, users: dict[int, torch.Tensor] | None) -> dict[tuple[int, str], torch.Tensor]:
    """The drawn families of an object-level composition's leaves (one per object, in ``slot``
    order), drawn together per chain: whole layouts of the data's images with an object within
    ``Drawn.within`` of each point of ``layout``, the values ``Drawn.some`` among the objects and
    ``Drawn.none`` on none of them. An object's other leaves (a weighted place's share on the
    place alone) read its leaf's values.
    Spread as :func:`_continuous_draws` spreads a family, over the objects' centres together."""
    by_slot: dict[int, list[int]] = {}  # every drawn value of a layout leaf carries its object's slot
    for i in leaves:
        by_slot.setdefault(graph.leaves[i].condition[graph.drawn_leaves[i][0]].slot, []).append(i)
    objects = [by_slot[s] for s in sorted(by_slot)]
    # each object's leaf with all the drawn families draws; the object's other leaves read it
    slots = [max(group, key=lambda i: len(graph.drawn_leaves[i])) for group in objects]
    fams = graph.drawn_leaves[slots[0]]
    cont = next(f for f in fams if graph.leaves[slots[0]].condition[f].values is None)
    discrete = tuple(f for f in fams if f != cont)
    conds = [graph.leaves[i].condition for i in slots]
    label = " & ".join(graph.leaves[i].label for i in slots)
    chains = None if users is None else users.get(slots[0])
    m = max(1, n if chains is None else int(chains.numel()))
    side = spread_side(m) if draws == "spread" else 1
    rows = side * side * m
    seed_ = _seed_for(seed, DRAW_STREAM, slots[0], 0)
    none = conds[0][cont].none
    got = graph.drawer(graph.domain, (cont, *discrete), held_values(conds[0][cont].some), rows, seed_, near=layout,
                       radius=conds[0][cont].within, objects=len(slots),
                       **({"excluded": held_values(none)} if none else {}))
    k, p = len(slots), len(conds[0][cont].near)
    pool = _checked_draws(got, f"the layout of {cont}, {', '.join(discrete)}", label, rows,
                          width=k * (p + len(discrete))).numpy().reshape(rows, k, p + len(discrete))
    pool = pool[_spread_or_first(pool[:, :, :p].reshape(rows, -1), m, side, seed_)]
    vals = torch.as_tensor(pool, dtype=torch.float32)  # (m, k, P + F)
    if chains is not None:  # the leaves' chains get the layouts; the others (cycled) never read theirs
        full = vals[torch.arange(n) % m].clone()
        full[chains] = vals
        vals = full
    out: dict[tuple[int, str], torch.Tensor] = {}
    for j, (leaf, group) in enumerate(zip(slots, objects)):
        out[(leaf, cont)] = vals[:, j, :p].contiguous()
        for d, fam in enumerate(discrete):
            out[(leaf, fam)] = _value_indices(vals[:, j, p + d:p + d + 1].contiguous(), fam, conds[j][fam].values)
        for other in group:
            out.update({(other, fam): out[(leaf, fam)] for fam in graph.drawn_leaves[other] if other != leaf})
    return out


def _value_indices(k: torch.Tensor, fam: str, values: Sequence[str]) -> torch.Tensor:
    """A discrete family's drawn (n, 1) values, checked to be indices of its ``values``."""
    if not ((k >= 0) & (k < len(values)) & (k == k.round())).all():
        raise SamplingError(f"the registry's draws of {fam!r} are not indices of its {len(values)} values")
    return k


def leaf_users(graph: EnergyGraph, branches: torch.Tensor | None,
               coef_table: torch.Tensor | None = None) -> dict[int, torch.Tensor] | None:
    """Each drawn leaf → the indices of the chains whose disjunct uses it (``branches``: the DNF
    route's disjunct per chain; ``coef_table``: its (K, L) coefficients where the caller has built
    them); None where every chain uses every leaf (no branches)."""
    if branches is None or not graph.drawn_leaves:
        return None
    if coef_table is None:
        coef_table = torch.tensor([d.coefs for d in graph.disjuncts], dtype=torch.float32)
    uses = coef_table[branches] != 0  # (N, L)
    return {leaf: torch.nonzero(uses[:, leaf]).squeeze(1) for leaf in graph.drawn_leaves}


def _continuous_draws(graph: EnergyGraph, fam: str, given: dict, where: dict, label: str, n: int, seed: int,
                      draws: str) -> torch.Tensor:
    """One drawn continuous family's (n, P) values for every chain (see :func:`draw_chain_values`)."""
    if draws == "independent":
        return _checked_draws(graph.drawer(graph.domain, fam, given, n, seed, **where), fam, label, n)
    side = spread_side(n)
    m = side * side * n
    pool = _checked_draws(graph.drawer(graph.domain, fam, given, m, seed, **where), fam, label, m).numpy()
    return torch.as_tensor(pool[_spread_or_first(pool, n, side, seed)], dtype=torch.float32)


def _spread_or_first(pool: np.ndarray, n: int, side: int, seed: int) -> np.ndarray:
    """Row indices (n,) into ``pool`` (side² · n draws, (side² · n, P)): spread over their region
    (:func:`~conceptlang.sampling.draws.spread_rows`, seeded from ``seed``), or the first n where
    side is 1 (independent draws) or the pool repeats values (a rare combination's draws, cycled,
    or a fixed point)."""
    if side == 1 or len(np.unique(pool, axis=0)) < len(pool):
        return np.arange(n)
    return spread_rows(pool, n, side, np.random.default_rng(_seed_for(seed, SPREAD_STREAM)))


def _checked_draws(got: Any, what: str, label: str, n: int, width: int | None = None) -> torch.Tensor:
    """The drawer's answer as an (n, P) float tensor (P = ``width`` where given), or a SamplingError."""
    if got is None:
        raise SamplingError(f"the registry cannot draw {what!r} for {label}")
    vals = torch.as_tensor(np.asarray(got, dtype=np.float32))
    if vals.ndim != 2 or vals.shape[0] != n or (width is not None and vals.shape[1] != width) \
            or not torch.isfinite(vals).all():
        raise SamplingError(f"the registry's draws of {what!r} are not {n} finite rows: shape {tuple(vals.shape)}")
    return vals


NOISE_RANGE = ("sigma_max", "sigma_min")  # the registry settings every noise-level sampler shares


def _explicit_steps(steps: int | None, user: dict[str, Any]) -> bool:
    """Whether the caller gave a step count (``steps``, or ``steps`` among the sampler settings)."""
    return steps is not None or user.get("steps") is not None


def resolve_settings(graph: EnergyGraph, sampler: str | None, steps: int | None,
                     user: dict[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
    """(sampler name, merged and validated settings, registry keys that this sampler does not use)."""
    registry = dict(graph.sampler_settings or {})
    name = sampler or registry.get("sampler") or ("annealed" if graph.all_noise_conditional else "langevin")
    spec = get_sampler(str(name))
    check_sampler(graph.models, spec.name)
    allowed = set(spec.defaults)
    unknown = sorted(k for k, v in user.items() if k not in allowed and v is not None)
    if unknown:
        raise SamplingError(f"the {spec.name} sampler has no setting(s) {', '.join(unknown)}; "
                            f"its settings are {', '.join(sorted(allowed))}")
    merged = dict(spec.defaults)
    ignored = []
    # The registry's settings were tuned for its own sampler: another family of sampler (annealed
    # Langevin named on a model tuned for an ODE solver) takes only the model's noise range from them.
    tuned_for = SAMPLERS.get(str(registry.get("sampler")))
    same_family = tuned_for is None or tuned_for.settings_family == spec.settings_family
    for k, v in registry.items():
        if k in allowed and (same_family or k in NOISE_RANGE):
            merged[k] = v
        elif k not in ("sampler",):
            ignored.append(k)
    for k, v in user.items():
        if v is not None:
            merged[k] = v
    if steps is not None:
        merged["steps"] = steps
    if _explicit_steps(steps, user):
        spec.explicit_steps(merged, user)
    spec.validate(merged, graph)
    return spec.name, merged, ignored


def _warn_fixed_level(name: str, settings: dict[str, Any], graph: EnergyGraph) -> None:
    """A sampler that runs one noise level, named on models whose registry samples them by
    annealing, starts at that level from noise: with a learned score it stays off the data."""
    spec = SAMPLERS[name]
    tuned_for = SAMPLERS.get(str((graph.sampler_settings or {}).get("sampler")))
    if tuned_for is None or spec.start_sigma(settings) > 0 or not graph.all_noise_conditional:
        return
    if tuned_for.start_sigma({**tuned_for.defaults, **(graph.sampler_settings or {})}) <= 0:
        return
    others = tuned_for.name if tuned_for.name == "annealed" else f"{tuned_for.name} or annealed"
    warnings.warn(f"the {spec.name} sampler runs at one noise level (sigma {settings.get('sigma')}), starting "
                  f"from noise, but these models' registry samples them by annealing from high noise "
                  f"({tuned_for.name}), and a score learned at a low level is unreliable far from the data: "
                  f"expect images off it; sample with {others}", stacklevel=3)


def _forward_rows(graph: EnergyGraph) -> int | None:
    """Rows the graph's networks have evaluated so far (each model's ``forward_rows`` counter, the
    fallback priors of sigma-limited models included); None when a model keeps no count."""
    seen: dict[int, Any] = {}
    stack = list(graph.models)
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen[id(m)] = m
        fallback = getattr(m, "fallback", None)
        if fallback is not None:
            stack.append(fallback)
    counts = [getattr(m, "forward_rows", None) for m in seen.values()]
    return None if any(c is None for c in counts) else int(sum(counts))


PROBE_LEVELS = 8


def _coef_rows(graph: EnergyGraph) -> list[Any] | None:
    """The linear coefficient rows a chain may get (the linear route's, or each DNF disjunct's);
    None for a DAG evaluated whole (a log-sum-exp)."""
    if graph.route == "dnf":
        return [d.coefs for d in graph.disjuncts]
    if graph.route == "linear":
        return [graph.linear_coefs]
    return None


def _low_rows(graph: EnergyGraph) -> list[Any] | None:
    """The rows of :func:`_coef_rows` below the graph's ``weights_above`` (None where it has none)."""
    if graph.weights_above is None:
        return None
    if graph.route == "dnf":
        return [d.low_coefs if d.low_coefs is not None else d.coefs for d in graph.disjuncts]
    if graph.route == "linear" and graph.low_linear_coefs is not None:
        return [graph.low_linear_coefs]
    return None


def _is_prior(leaf: Any) -> bool:
    return leaf.ref is None and not leaf.refs


STRONG_COEF = 1.0  # a leaf coefficient above this raises an ODE solver's steps (steps_for_weights)
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
_DRAWN_HERE = object()  # rows_per_evaluation's default: draw the probe chain's values itself
MAX_WEIGHT_STEPS = 4.0  # the most steps_for_weights multiplies the steps by (a coefficient of 7 and above)


def strongest_coef(graph: EnergyGraph) -> float:
    """The largest coefficient any chain's product gives a leaf other than the prior (1 for the
    log-sum-exp route, whose coefficients are not per chain): ``6 * red & circle`` in the joint mode
    gives the red leaf 5, its extra share beside the joint leaf."""
    rows = _coef_rows(graph)
    if rows is None:
        return 1.0
    prior = {leaf.index for leaf in graph.leaves if _is_prior(leaf)}
    return max((c for row in rows for i, c in enumerate(row) if i not in prior), default=1.0)


def _check_coefficients(graph: EnergyGraph) -> None:
    """Refuse a graph whose weights multiply to a leaf coefficient that float32 cannot hold (the
    samplers compose in float32): every score would be infinite."""
    rows = _coef_rows(graph) or []
    worst = max((abs(c) for row in rows for c in row), default=0.0)
    if not math.isfinite(worst) or worst > FLOAT32_MAX:
        raise SamplingError(f"the weights of {graph.expression!r} multiply to a coefficient of {worst:g}, "
                            f"beyond the {FLOAT32_MAX:.3g} that float32 holds: use smaller weights")


def steps_for_weights(graph: EnergyGraph, spec: Any, s: dict[str, Any], explicit: bool) -> float | None:
    """Scale an ODE solver's registry steps (and ``max_nfe``) by (1 + c) / 2, at most
    :data:`MAX_WEIGHT_STEPS`, where the largest leaf coefficient c (:func:`strongest_coef`) exceeds
    1 (a weight above 2 on a concept of a joint leaf: 1 + c is that weight): a stronger term makes
    the composed score change faster along the path, and the registry's steps were set for weights
    up to 2 (docs/compiler.md, "Strong weights"). Returns the factor applied, or None (steps named
    by the user, a solver without a step budget, or no such coefficient)."""
    if explicit or spec.budget_steps is None:
        return None
    c = strongest_coef(graph)
    if c <= STRONG_COEF:
        return None
    factor = min((1.0 + c) / 2.0, MAX_WEIGHT_STEPS)
    s["steps"] = math.ceil(s["steps"] * factor - 1e-9)
    if s.get("max_nfe") is not None:
        s["max_nfe"] = math.ceil(s["max_nfe"] * factor - 1e-9)
    return factor


def rows_bound(graph: EnergyGraph) -> int | None:
    """An upper bound on the network rows one composed-score evaluation costs a chain, without
    running a network: per model with a leaf of non-zero coefficient at some noise level (below
    the graph's ``weights_above`` too), its non-prior leaves plus one (a guided
    model's null row, shared by the chain's leaves; or the prior leaf itself; a σ-limited model's
    fallback evaluates the same rows), twice that for a model with an autoguide (its guide's pass
    beside each row) and again for one with mirror averaging (the mirror image's pass); at least the
    finishing model's passes where the graph has one. None for a DAG evaluated whole (every leaf,
    every model)."""
    rows = _coef_rows(graph)
    if rows is None:
        return None
    low = _low_rows(graph) or [None] * len(rows)
    most = 0
    for coefs, below in zip(rows, low):
        per_model: dict[int, int] = {}
        passes: dict[int, int] = {}
        for i, c in enumerate(coefs):
            if c != 0 or (below is not None and below[i] != 0):  # a leaf used at some level
                leaf = graph.leaves[i]
                per_model[id(leaf.model)] = per_model.get(id(leaf.model), 1) + (0 if _is_prior(leaf) else 1)
                passes[id(leaf.model)] = getattr(leaf.model, "passes_per_row", 1)
        most = max(most, sum(k * passes[m] for m, k in per_model.items()))
    if graph.finish_model is not None:  # below its level an evaluation is the finishing model's one row
        most = max(most, getattr(graph.finish_model, "passes_per_row", 1))
    return most


def rows_per_evaluation(graph: EnergyGraph, s: dict[str, Any], dev: torch.device, *,
                        chain_conds: Any = _DRAWN_HERE) -> int:
    """The most network rows one composed-score evaluation costs a chain: the evaluation is run
    on one probe chain per kind of coefficient row (the linear route's row, or each DNF disjunct's,
    grouped by the models and prior-ness of its non-zero leaves, which fix its rows) at
    ``PROBE_LEVELS`` noise levels spaced in log σ from ``sigma_max``·√2 (churn raises the level up
    to that) to ``sigma_min``, counting the models' rows. A guidance interval or a model's σ range
    narrower than that spacing could be missed; the record's ``nfe`` is measured all the same.
    :func:`sample` runs it only where :func:`rows_bound` does not already keep the steps within
    the budget, and counts its time in the sampling time. ``chain_conds``: the probe chain's drawn
    values (:func:`_probe_conditions`) where the caller has them; drawn here otherwise."""
    if chain_conds is _DRAWN_HERE:
        chain_conds = _probe_conditions(graph, dev)
    top = float(s["sigma_max"]) * (2.0 ** 0.5 if s.get("s_churn") else 1.0)
    levels = torch.exp(torch.linspace(np.log(top), np.log(float(s["sigma_min"])), PROBE_LEVELS)).tolist()
    return max(max(per_kind) for per_kind in _probe_rows(graph, dev, levels, chain_conds))


def _probe_conditions(graph: EnergyGraph, dev: torch.device) -> dict[int, torch.Tensor] | None:
    """The probe chain's own drawn values (independent draws from seed 0), as the per-chain
    conditions :class:`_ChainTarget` takes, or None where the graph draws none: without them a
    drawn leaf is encoded as the null condition and shares the prior's row, which undercounts the
    rows a sampled chain costs."""
    drawn = draw_chain_values(graph, 1, 0, "independent")
    return graph.chain_conditions(drawn, dev) if drawn else None


def _probe_rows(graph: EnergyGraph, dev: torch.device, levels: list[float], chain_conds: Any) -> list[list[int]]:
    """Per kind of coefficient row (see :func:`rows_per_evaluation`), the network rows one
    composed-score evaluation costs a probe chain (its drawn values ``chain_conds``, from
    :func:`_probe_conditions`) at each of ``levels``."""
    def kind(row: Any) -> tuple:  # the models and prior-ness of a row's non-zero leaves, which fix its rows
        return () if row is None else tuple(sorted(
            (id(graph.leaves[i].model), _is_prior(graph.leaves[i])) for i, c in enumerate(row) if c != 0))

    kinds: dict[tuple, Any] = {}
    rows = _coef_rows(graph) or [None]
    for coefs, below in zip(rows, _low_rows(graph) or [None] * len(rows)):
        kinds.setdefault((kind(coefs), kind(below)), (coefs, below))
    c, h, w = graph.image_shape
    x = torch.zeros((1, c, h, w), device=dev)
    out: list[list[int]] = []
    with torch.inference_mode(all(m.kind == "implicit" for m in graph.models)):
        for coefs, below in kinds.values():
            table = None if coefs is None else torch.tensor([coefs], dtype=torch.float32, device=dev)
            low = None if below is None else torch.tensor([below], dtype=torch.float32, device=dev)
            target = _ChainTarget(graph, table, chain_conds, low=low)
            counts: list[int] = []
            for sigma in levels:
                before = _forward_rows(graph)
                target.score(x, torch.full((1,), sigma, device=dev))
                after = _forward_rows(graph)
                if before is None or after is None:
                    raise SamplingError("max_nfe needs models that count their network rows")
                counts.append(after - before)
            out.append(counts)
    return out


def steps_within_budget(graph: EnergyGraph, spec: Any, s: dict[str, Any], dev: torch.device) -> int:
    """The steps, at most ``s["steps"]``, whose network rows per chain stay within
    ``s["max_nfe"]``: from the steps that fit with every evaluation at the most rows any costs
    (:func:`rows_per_evaluation`), one more at a time while they fit with each evaluation counted
    at the noise level the solver makes it at (the sampler's ``eval_levels``: a guidance interval,
    the manifest's ``concept_weights_above`` or a model's σ range makes some levels cheaper), for
    the kind of chain that spends the most; the corrector's and restarts' evaluations at the most.
    Without ``eval_levels``, or with churn (which raises each level by a step-dependent factor),
    every evaluation at the most."""
    conds = _probe_conditions(graph, dev)  # drawn once: the probes below all use the same chain
    most = rows_per_evaluation(graph, s, dev, chain_conds=conds)
    fits = spec.budget_steps(s, most)  # every evaluation at the most: these steps fit for certain
    if spec.eval_levels is None or s.get("s_churn") or fits >= s["steps"]:
        return fits
    extra = s.get("corrector_steps", 0)
    if s.get("restarts"):
        extra += s["restarts"] * len(spec.eval_levels(s, s["restart_steps"]))
    budget = int(s["max_nfe"]) - extra * most
    seen: dict[float, list[int]] = {}
    for n in range(fits + 1, int(s["steps"]) + 1):  # one more step while the count fits
        levels = spec.eval_levels(s, n)
        new = sorted({sg for sg in levels if sg not in seen})
        if new:
            for sg, per_kind in zip(new, zip(*_probe_rows(graph, dev, new, conds))):
                seen[sg] = list(per_kind)
        cost = max(sum(seen[sg][k] for sg in levels) for k in range(len(seen[levels[0]])))
        if cost > budget:
            break
        fits = n
    return fits


def stratified_branches(shares: torch.Tensor, n: int, gen: torch.Generator,
                        groups: Sequence[Any] | None = None) -> torch.Tensor:
    """Branch index per chain (N,): systematic draws at (k + u)/n through the cumulative shares of
    the branches taken in a random order, the chains then shuffled. Each chain's branch is still
    distributed as ``shares`` (u is uniform, the orders random), but every branch gets n·share_k
    chains rounded up or down, not a multinomial count: with 32 chains and five branches a
    multinomial draw alone puts the branch proportions ≈ 0.13 in total variation from the shares.
    (The random branch order matters when n is below the number of branches: in the DNF's
    product order, every other branch of 2 × 2 × … combinations shares one value of the last
    family, and systematic draws through it would pick that value every time.) With ``groups`` (one
    label per branch: the OR branch as written that each disjunct stands for), the random order
    keeps each group's branches together, groups in the order of their first branch, so every
    group too gets n times its share rounded up or down (16 chains over 138 disjuncts of three
    written branches used to give one of them 1 chain for an expected 4.9)."""
    perm = torch.randperm(shares.numel(), generator=gen)
    if groups is not None and len(set(groups)) > 1:
        first: dict[Any, int] = {}
        for k, i in enumerate(perm.tolist()):
            first.setdefault(groups[i], k)
        rank = torch.tensor([first[groups[i]] for i in perm.tolist()])
        perm = perm[torch.sort(rank, stable=True).indices]
    u = (torch.arange(n, dtype=torch.float64) + torch.rand((), generator=gen, dtype=torch.float64)) / n
    cum = torch.cumsum(shares[perm] / shares.sum(), 0)
    idx = perm[torch.searchsorted(cum, u, right=True).clamp_(max=shares.numel() - 1)]
    return idx[torch.randperm(n, generator=gen)]


def sample(graph: EnergyGraph, n: int, seed: int = 0, sampler: str | None = None, steps: int | None = None,
           device: str | torch.device = "auto", *, batch_size: int | None = None, progress: bool | None = False,
           callback: Callable[[dict[str, Any]], None] | None = None, frames: int = 0,
           log_z: str | None = None, draws: str = "spread", **settings: Any) -> SampleResult:
    """Draw ``n`` images from the composition ``graph``.

    ``sampler``: a name in :data:`~conceptlang.sampling.samplers.SAMPLERS` — "langevin", "annealed",
    "mala", "heun", "dpmpp_2m", "dpmpp_3m" (default: the registry's, else annealed for noise-conditional
    models and langevin otherwise). ``steps``: Langevin steps (annealed spreads them evenly over its noise
    levels; with fewer steps than levels it uses that many levels, one step each, between the same
    σ_max and σ_min), or the ODE solvers' σ levels; an ODE solver's ``max_nfe`` setting caps those
    so that a chain's network rows stay within it, from the rows one evaluation of this graph costs
    (:func:`steps_within_budget`, each evaluation counted at its noise level; a registry's budget
    yields to an explicit ``steps`` unless
    ``max_nfe`` is passed too). The record's ``score_evals`` counts composed-score
    evaluations per chain and ``nfe`` the network forward passes per chain (rows through the
    models' networks, a guided model's prior passes included). ``batch_size`` bounds how many
    chains run at once (memory); results are reproducible for a given seed, device and batch size.
    Under torch.distributed (torchrun) chunk k of the chains runs on rank k mod W (default batch
    size: ceil(n / W)) and every rank returns all the images, the ones a one-process run with
    that batch size draws.
    ``frames`` > 0 records that many snapshots of the first chains (for a GIF). Remaining keyword
    arguments are sampler settings (``step_size``, ``noise_scale``, ``sigma_max``, …).
    ``log_z="estimate"`` (DNF route, explicit energies) draws each disjunct with probability ∝ its
    estimated partition function instead of assuming them equal (see :mod:`conceptlang.sampling.estimate`).
    ``draws``: how the chains' own values of drawn continuous families are drawn: ``"spread"``
    (default: together, covering the family's region evenly, each chain's value still distributed
    as the data's; :mod:`conceptlang.sampling.draws`) or ``"independent"``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SamplingError(f"n must be a positive integer, got {n!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise SamplingError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SamplingError(f"seed must be a non-negative integer, got {seed!r}")
    if draws not in DRAW_MODES:
        raise SamplingError(f"draws must be one of {', '.join(DRAW_MODES)}, got {draws!r}")
    name, s, ignored = resolve_settings(graph, sampler, steps, settings)
    _check_coefficients(graph)
    _warn_fixed_level(name, s, graph)
    dev = resolve_device(device)
    graph.to(dev)
    spec = SAMPLERS[name]
    weight_steps = steps_for_weights(graph, spec, s, _explicit_steps(steps, settings))
    probe_seconds = 0.0
    if spec.budget_steps is not None and s.get("max_nfe") is not None:
        bound = rows_bound(graph)
        if bound is None or spec.budget_steps(s, bound) < s["steps"]:  # the steps may not fit: count the rows
            t_probe = time.perf_counter()
            s["steps"] = steps_within_budget(graph, spec, s, dev)
            probe_seconds = time.perf_counter() - t_probe
    kwargs, score_evals = spec.prepare(s)
    total_steps = s.pop("total_steps", s["steps"])
    n = int(n)
    rank, world = _ranks()
    # under torchrun every rank runs its share of the chunks (chunk k on rank k mod W); by default one each
    bs = min(n, batch_size or (-(-n // world)))

    # Branch draws for the DNF route: independent of the batch size.
    branches = None
    coef_table = None
    low_table = None
    estimates: dict[str, Any] = {}
    if log_z not in (None, "equal", "estimate"):
        raise SamplingError(f"log_z must be 'equal' or 'estimate', got {log_z!r}")
    if log_z == "estimate" and graph.route != "dnf":
        raise SamplingError("log_z='estimate' sets the shares of DNF disjuncts; this graph has none "
                            f"(route {graph.route!r})")
    if graph.route == "dnf":
        share_list = [d.share for d in graph.disjuncts]
        if log_z == "estimate":
            share_list, estimates = _estimated_shares(graph, name, s, kwargs, dev, seed)
        shares = torch.tensor(share_list, dtype=torch.float64)
        gen = torch.Generator().manual_seed(_seed_for(seed, 0xB7A))
        branches = stratified_branches(shares, n, gen, [d.group for d in graph.disjuncts])  # (N,)
        coef_table = torch.tensor([d.coefs for d in graph.disjuncts], dtype=torch.float32)  # (K, L)
    elif graph.route == "linear":
        coef_table = torch.tensor([graph.linear_coefs], dtype=torch.float32)  # (1, L)
    low_rows = _low_rows(graph)
    if low_rows is not None:
        low_table = torch.tensor(low_rows, dtype=torch.float32)  # (K, L) below weights_above

    drawn = draw_chain_values(graph, n, seed, draws, leaf_users(graph, branches, coef_table))
    c, h, w = graph.image_shape
    out = []
    frame_list: list[torch.Tensor] = []
    stats: dict[str, Any] = {}
    every = max(1, total_steps // frames) if frames else 0
    # Implicit models' scores are plain forward passes: no autograd bookkeeping is needed at all.
    no_autograd = all(m.kind == "implicit" for m in graph.models)
    rows_before = _forward_rows(graph)
    t0 = time.perf_counter()
    local = 0
    for chunk, start in enumerate(range(0, n, bs)):
        if chunk % world != rank:
            continue
        b = min(bs, n - start)
        local += b
        gen = torch.Generator(device=dev).manual_seed(_seed_for(seed, 1, chunk))
        x = torch.rand((b, c, h, w), generator=gen, device=dev) * 2.0 - 1.0  # (B, C, H, W), uniform in the data box
        start_sigma = spec.start_sigma(s)
        if start_sigma:
            x = x + start_sigma * torch.randn((b, c, h, w), generator=gen, device=dev)
        coefs = low = None
        if coef_table is not None:
            rows = branches[start:start + b] if branches is not None else torch.zeros(b, dtype=torch.long)
            coefs = coef_table[rows].to(dev)  # (B, L)
            low = low_table[rows].to(dev) if low_table is not None else None
        chain_conds = graph.chain_conditions({k: v[start:start + b] for k, v in drawn.items()}, dev) if drawn else None
        target = _ChainTarget(graph, coefs, chain_conds, low)
        cb = _callback(callback, chunk, frame_list if (frames and chunk == 0) else None, every)
        run_kw = dict(kwargs)
        if name == "mala":
            run_kw["stats"] = stats
        with torch.inference_mode(no_autograd):
            x = spec.fn(target, x, generator=gen, callback=cb, disable=None if progress is None else not progress,
                        **run_kw)
        if frames and chunk == 0:
            frame_list.append(x[:MAX_FRAME_CHAINS].detach().clamp(-1, 1).cpu())
        out.append(x.detach().clamp(-1.0, 1.0).cpu())  # (B, C, H, W)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0 + probe_seconds
    rows_after = _forward_rows(graph)
    rows, chains = (None if rows_before is None or rows_after is None else rows_after - rows_before), local
    if world > 1 and rows is not None:  # every rank's network rows over every rank's chains
        import torch.distributed as dist

        both = torch.tensor([float(rows), float(local)], dtype=torch.float64)
        dist.all_reduce(both)
        rows, chains = both[0].item(), both[1].item()
    nfe = None if rows is None or not chains else round(rows / chains, 2)
    if nfe is not None and s.get("max_nfe") is not None and nfe > s["max_nfe"]:
        why = ("one step of this graph costs more" if s["steps"] <= 1
               else "the budget's probe counted fewer rows than the chains used")
        warnings.warn(f"{nfe:g} network evaluations per sample, above max_nfe {s['max_nfe']}: {why}", stacklevel=2)
    images = torch.cat(out, 0) if out else torch.zeros((0, c, h, w))
    if world > 1:
        images = _gather_chunks(images, n, bs, rank, world)
    record = {"sampler": name, **{k: v for k, v in s.items()}, "total_steps": total_steps,
              "score_evals": score_evals, "nfe": int(nfe) if nfe is not None and nfe == int(nfe) else nfe,
              "batch_size": bs,
              "seed": int(seed), "device": str(dev), "route": graph.route, "weight_steps": weight_steps}
    if ignored:
        record["registry_keys_not_used"] = ignored
    if drawn:
        record["drawn"] = sorted({f for _, f in drawn})
        record["draws"] = draws
    if graph.disjuncts is not None:
        record["disjuncts"] = len(graph.disjuncts)
        record["shares"] = shares.tolist()
        record["log_z"] = "estimated" if estimates else _log_z_source(graph)
        record.update(estimates)
    if "acceptance" in stats:
        record["acceptance"] = stats["acceptance"]
    return SampleResult(images=images, settings=record, seconds=seconds, branches=branches,
                        frames=_stack_frames(frame_list), device=str(dev), acceptance=stats.get("acceptance"))


def _log_z_source(graph: EnergyGraph) -> str:
    """Where the disjuncts' shares came from, for the sidecar."""
    if not isinstance(graph.options.get("log_z", "equal"), str):
        return "as given"
    ow = getattr(graph, "or_weights", None)
    if ow is not None and ow.source == "data":
        return "data: each OR branch by its probability in the data (or_weights=data)"
    return "assumed equal"


def _estimated_shares(graph: EnergyGraph, name: str, s: dict[str, Any], kwargs: dict[str, Any],
                      dev: torch.device, seed: int, pilot: int = 512) -> tuple[list[float], dict[str, Any]]:
    from conceptlang.sampling.estimate import describe, estimate_log_z, shares_from

    if not graph.all_explicit:
        raise SamplingError("estimating log Z needs explicit energies; implicit models only give scores")
    spec = SAMPLERS[name]
    c, h, w = graph.image_shape
    sigma_value = spec.end_sigma(s)
    logs, esss = [], []
    for k, d in enumerate(graph.disjuncts):
        gen = torch.Generator(device=dev).manual_seed(_seed_for(seed, 2, k))
        row = torch.tensor([d.coefs], dtype=torch.float32, device=dev)  # (1, L)
        x = torch.rand((pilot, c, h, w), generator=gen, device=dev) * 2.0 - 1.0
        if spec.start_sigma(s):
            x = x + spec.start_sigma(s) * torch.randn((pilot, c, h, w), generator=gen, device=dev)
        x = spec.fn(_ChainTarget(graph, row.expand(pilot, -1)), x, generator=gen, callback=None, disable=True,
                    **kwargs)
        sigma = None if sigma_value is None else torch.full((pilot,), float(sigma_value), device=dev)
        lz, ess = estimate_log_z(graph, x.detach().clamp(-1, 1), row, sigma, gen, draws=8 * pilot)
        logs.append(lz)
        esss.append(ess)
    shares = shares_from([d.log_weight for d in graph.disjuncts], logs)
    return shares, describe(logs, esss, 8 * pilot)


def _callback(user: Callable | None, chunk: int, frames: list | None, every: int) -> Callable | None:
    if user is None and frames is None:
        return None

    def cb(info: dict[str, Any]) -> None:
        if frames is not None and info["i"] % every == 0:
            frames.append(info["x"][:MAX_FRAME_CHAINS].detach().clamp(-1, 1).cpu())
        if user is not None:
            user({**info, "chunk": chunk})

    return cb


def _ranks() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless torch.distributed is initialised (torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_chunks(images: torch.Tensor, n: int, bs: int, rank: int, world: int) -> torch.Tensor:
    """Every rank's chunks (chunk k ran on rank k mod W) in chunk order, on every rank: the images
    a one-process run with the same batch size draws."""
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, images.cpu())
    taken = [0] * world
    out = []
    for k, start in enumerate(range(0, n, bs)):
        r, b = k % world, min(bs, n - start)
        out.append(parts[r][taken[r]: taken[r] + b])
        taken[r] += b
    return torch.cat(out, 0)


def _stack_frames(frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per chain: (F, C, H, W) over time."""
    if not frames:
        return []
    stacked = torch.stack(frames, 0)  # (F, B, C, H, W)
    return [stacked[:, i] for i in range(stacked.shape[1])]
