"""Concept inference: which concepts best explain an image, by energy (Du, Li & Mordatch 2020, §4.3).

For each discrete family the image's energy under every value is computed and the values are
ranked, lowest energy first; the inferred value is the minimiser. A family with a single value
(a yes/no attribute) is decided against its known-absent condition when the model was trained with
one (joint models: the ``<none>`` token): the concept holds when E(x | c) < E(x | not c), the Bayes
decision at equal base rates. Models without it fall back to the unconditional model: the concept
holds when E(x | c) < E(x), i.e. when p(x | c) > p(x), which is p(c | x) > p(c). Continuous parameters such as
``position(x, y)`` are estimated by minimising the energy over the family's range: a coarse grid,
then local grids around the best point at a shrinking spacing.

Where the model's manifest entry holds a calibrated readout for a discrete family (weights over
the noise levels of an implicit model's energy, fitted by :mod:`conceptlang.inference.calibrate`),
the values are ranked by that reweighted energy instead of the plain sum over levels.

Implicit (noise-predicting) models' "energy" is their seeded denoising loss (docs/design.md, "Model
kinds"). To compare conditions on *the same* noise draws, every energy call here batches over
images with one condition per row pattern, never over conditions of one image, so whatever noise
a model draws for a batch shape is shared by all the conditions it is compared under.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from conceptlang.errors import ConceptLangError, DataError, ModelError
from conceptlang.models.conditions import ABSENT, has_absent_token

if TYPE_CHECKING:
    import torch

# Explicit noise-conditional energies E(x, σ) are compared at this σ (small: close to the data).
EXPLICIT_SIGMA = 0.05


@dataclass
class FamilyInference:
    family: str
    kind: str  # "discrete" | "binary" | "continuous"
    value: Any  # value name, bool (binary), or tuple of floats (continuous)
    energy: float
    ranking: list[tuple[str, float]] = field(default_factory=list)  # (value, energy or score), lowest first
    readout: str = "energy"  # what ranks the values: "energy", "calibrated" (manifest's level weights),
    # or either "in context" (ranked under the rest of the inferred description; infer_batch's rerank)

    def to_json(self) -> dict:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        key = "energy" if self.readout == "energy" else "score"
        return {
            "family": self.family,
            "kind": self.kind,
            "value": value,
            "energy": self.energy,
            "readout": self.readout,
            "ranking": [{"value": v, key: e} for v, e in self.ranking],
        }


@dataclass
class InferenceResult:
    domain: str
    families: dict[str, FamilyInference]
    labels: dict
    seconds: float = 0.0
    domain_choice: str = "given"

    def to_json(self) -> dict:
        return {
            "domain": self.domain,
            "domain_choice": self.domain_choice,
            "families": {k: v.to_json() for k, v in self.families.items()},
            "labels": self.labels,
            "seconds": round(self.seconds, 4),
        }

    def format(self) -> str:
        lines = [f"domain: {self.domain} ({self.domain_choice})"]
        for fam in self.families.values():
            if fam.kind == "continuous":
                coords = ", ".join(f"{v:.3f}" for v in fam.value)
                lines.append(f"{fam.family}: ({coords})  energy {fam.energy:.4g}")
            else:
                shown = fam.family if fam.kind == "binary" else fam.value
                if fam.kind == "binary":
                    shown = f"{fam.family}: {'yes' if fam.value else 'no'}"
                else:
                    shown = f"{fam.family}: {fam.value}"
                rank = "  ".join(f"{v} {e:.4g}" for v, e in fam.ranking)
                how = "" if fam.readout == "energy" else f"{fam.readout} scores: "
                lines.append(f"{shown}  energy {fam.energy:.4g}   [{how}{rank}]")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------- energies


def _as_tensor(images) -> "torch.Tensor":
    """uint8 (H, W, 3) / (N, H, W, 3) numpy, or float (C, H, W) / (N, C, H, W) in [-1, 1] → (N, C, H, W) float."""
    import torch

    from conceptlang.data import to_tensor

    if isinstance(images, torch.Tensor):
        x = images.detach().float()
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise DataError(f"expected an image tensor (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
        return x
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8:
        raise DataError(f"expected uint8 images (H, W, 3) or (N, H, W, 3), got {arr.dtype} {arr.shape}")
    return to_tensor(arr)


def _energy(model, x, cond) -> "torch.Tensor":
    """(N, C, H, W), (N, D) → (N,) energy, with the σ convention of the model's kind."""
    import torch

    sigma = None
    if model.noise_conditional and model.kind == "explicit":
        sigma = torch.full((x.shape[0],), EXPLICIT_SIGMA, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        e = model.energy(x, cond, sigma)
    if e.shape != (x.shape[0],):
        raise ModelError(f"model {getattr(model, 'name', model)!r} returned energies of shape {tuple(e.shape)} for {x.shape[0]} images")
    if not torch.isfinite(e).all():
        raise ModelError(f"model {getattr(model, 'name', model)!r} returned a non-finite energy during inference")
    return e


# Pixels (C·H·W summed over rows) per model call when many conditions are stacked: bounds memory.
_STACK_PIXELS = 1 << 18


def _levels(model, x, cond, draws: int | None = None) -> "torch.Tensor":
    """(N, C, H, W), (N, D) → (N, S) per-noise-level energies of an implicit model (``draws`` noise
    draws per level; None: the model's default)."""
    import torch

    with torch.no_grad():
        e = model.energy_levels(x, cond) if draws is None else model.energy_levels(x, cond, draws)
    if e.ndim != 2 or e.shape[0] != x.shape[0] or not torch.isfinite(e).all():
        raise ModelError(f"model {getattr(model, 'name', model)!r} returned bad level energies {tuple(e.shape)}")
    return e


def _energies_stacked(model, x, img_idx: np.ndarray, enc, levels: bool = False, draws: int | None = None) -> np.ndarray:
    """Row r's energy is image ``img_idx[r]`` under encoded condition ``enc[r]``; returns (R,),
    or (R, S) per-noise-level energies with ``levels``. ``draws`` (implicit models): noise draws
    per level, the energy then being the sum of its levels.

    The (image, condition) pairs are stacked into few large model calls instead of one call per
    condition: per-call overhead dominates small images on a CPU. Exact, not an approximation: an
    energy is computed row by row (the implicit energy's noise is drawn once per call and shared by
    every row), so a row's value does not depend on what else is in its batch.
    """
    rows = len(img_idx)
    parts = []
    chunk = max(1, _STACK_PIXELS // max(1, int(np.prod(x.shape[1:]))))
    enc = enc.to(x.device)
    for s in range(0, rows, chunk):
        idx = img_idx[s:s + chunk]
        if levels or draws is not None:
            e = _levels(model, x[idx], enc[s:s + len(idx)], draws)
            e = e if levels else e.sum(1)
        else:
            e = _energy(model, x[idx], enc[s:s + len(idx)])
        parts.append(e.double().cpu().numpy())
    return np.concatenate(parts) if parts else np.empty(0)


def _energies_per_condition(model, x, conditions: Sequence, levels: bool = False, draws: int | None = None) -> np.ndarray:
    """Energy of every image under every condition: (N, L), or (N, L, S) per noise level with
    ``levels``; stacked into few calls (``draws``: see :func:`_energies_stacked`)."""
    import torch

    n, L = x.shape[0], len(conditions)
    enc = model.encode(list(conditions))  # (L, D)
    img_idx = np.repeat(np.arange(n), L)
    rows = enc[torch.as_tensor(np.tile(np.arange(L), n))]
    out = _energies_stacked(model, x, img_idx, rows, levels, draws)
    return out.reshape((n, L) + out.shape[1:])


def _energies_rowwise(model, x, rows: Sequence[Sequence], levels: bool = False, draws: int | None = None) -> np.ndarray:
    """``rows[i][j]`` is image i's j-th candidate condition; returns (N, J) energies, or (N, J, S)
    per noise level with ``levels``, stacked (``draws``: see :func:`_energies_stacked`)."""
    n, J = len(rows), len(rows[0])
    enc = model.encode([c for r in rows for c in r])  # (N·J, D), image-major
    out = _energies_stacked(model, x, np.repeat(np.arange(n), J), enc, levels, draws)
    return out.reshape((n, J) + out.shape[1:])


# ----------------------------------------------------------------------------------- inference


def _resolve_domain(x, registry, domain: str | None) -> tuple[str, str]:
    from conceptlang.data import DOMAIN_NAMES

    if domain is not None:
        registry.domain(domain)  # raises a clear error when the registry has no such domain
        return domain, "given"
    c, h, w = x.shape[1:]
    fits = []
    listed = getattr(registry, "domains", None)
    names = list(listed()) if callable(listed) else list(DOMAIN_NAMES)
    for name in names:
        try:
            dom = registry.domain(name)
            registry.prior(name)
        except ConceptLangError:
            continue
        if dom.channels == c and dom.image_size == h == w:
            fits.append(name)
    if not fits:
        raise DataError(f"no domain in the registry takes {c}×{h}×{w} images; pass --domain")
    if len(fits) == 1:
        return fits[0], "only domain for this image size"
    # Several domains take this shape: pick the one whose unconditional model explains the image best.
    scores = {}
    for name in fits:
        model, cond = registry.prior(name)
        scores[name] = float(_energies_per_condition(model, x[:1], [cond]).mean())
    best = min(scores, key=scores.get)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items())
    return best, f"lowest prior energy ({shown})"


def _grid_axis(lo: float, hi: float, k: int) -> np.ndarray:
    # Cell centres of k equal cells, so the grid never sits on the border where no object can be.
    return lo + (np.arange(k) + 0.5) * (hi - lo) / k


def infer_batch(
    images,
    registry,
    domain: str | None = None,
    *,
    device: str = "cpu",
    coarse: int = 12,
    refine_rounds: int = 3,
    refine_points: int = 3,
    families: Sequence[str] | None = None,
    joint: bool = True,
    draws: int | None = None,
    rerank: bool = True,
) -> list[InferenceResult]:
    """Infer every family of ``domain`` for each image (uint8 NHWC numpy or float NCHW tensor).

    Continuous families: a ``coarse``ⁿ grid of cell centres over the parameters' support, then
    ``refine_rounds`` local ``refine_points``ⁿ grids, each centred on the best point so far with half
    the previous spacing. The coarse grid must be finer than the energy's basin around the truth:
    beyond a small miss a scenes model's energy of a nearby place can exceed that of a far one, so
    a coarse cell that misses the object by more than about 0.04 can lose to a cell far away.
    The support is where the domain's generator puts the parameter (objects
    never touch the border), else the family's declared ranges: outside the training data a model's
    energy says nothing. Discrete families are decided first; with ``joint`` (default) the
    continuous search then conditions on them when one joint model serves all (the registry's
    ``joint`` hook): E(x | shape, colour, size, position) rather than E(x | position), the energy
    of the whole scene description, which is sharper than the marginal over the other families.
    ``draws``: noise draws per σ level of an implicit model's energy when a discrete family's
    values are ranked (default: the model's ``inference_draws`` from its manifest, else its energy's
    own draws); the ranking is the same expectation estimated with less variance, at a cost
    proportional to the draws. The continuous search uses the energy's own draws.
    With ``rerank`` (default) and ``joint``, once the continuous families are found each discrete
    family of two or more values is ranked again under the whole inferred description, the other
    families' values and the continuous parameters included: E(x | shape, colour, size = v,
    position) for scenes (:func:`_rerank_in_context`). The marginal E(x | size = v) leaves the
    model to average over where the object is and what it looks like; the full description does
    not, and it decides size on images the marginal gets wrong (docs/experiments.md).
    Returns one :class:`InferenceResult` per image.
    """
    if draws is not None and (isinstance(draws, bool) or not isinstance(draws, int) or draws < 1):
        raise DataError(f"draws must be an integer ≥ 1, got {draws!r}")
    t0 = time.perf_counter()
    x = _as_tensor(images).to(device)  # (N, C, H, W)
    if x.shape[0] == 0:
        return []
    dom_name, choice = _resolve_domain(x, registry, domain)
    dom = registry.domain(dom_name)
    if x.shape[1:] != (dom.channels, dom.image_size, dom.image_size):
        raise DataError(
            f"domain {dom_name!r} takes {dom.channels}×{dom.image_size}×{dom.image_size} images, "
            f"got {tuple(x.shape[1:])}"
        )
    n = x.shape[0]
    wanted = list(families) if families is not None else [f.name for f in dom.families]
    per_image: list[dict[str, FamilyInference]] = [{} for _ in range(n)]
    prior_e: np.ndarray | None = None

    # Discrete families first, so that a continuous search can condition on them.
    for fam in sorted(dom.families, key=lambda f: f.kind != "discrete"):
        if fam.name not in wanted:
            continue
        if fam.kind == "discrete":
            groups, absent = discrete_groups(registry, dom_name, fam)
            readout = _readout(groups, fam, absent)
            if readout is not None:
                # One model scores every condition: read its noise levels out with the calibrated
                # weights (the values, then the known-absent condition, as calibrated).
                (model, cols, conds), = groups.values()
                lv = _energies_per_condition(model, x, conds, levels=True, draws=_ranking_draws(model, draws))  # (N, J, S)
                energies, scores = lv.sum(2), lv @ readout.weights + readout.bias  # (N, J) each
                ranked = _ranked(fam, condition_names(fam, absent), energies, scores, "calibrated")
                for i in range(n):
                    per_image[i][fam.name] = ranked[i]
                continue
            e = np.empty((n, len(fam.values)))
            other = None
            for model, cols, conds in groups.values():
                got = _energies_per_condition(model, x, conds, draws=_ranking_draws(model, draws))
                for k, j in enumerate(cols):
                    if j < 0:
                        other = got[:, k]
                    else:
                        e[:, j] = got[:, k]
            if len(fam.values) == 1:
                if other is not None:
                    other_name = "(not)"
                else:
                    if prior_e is None:
                        pm, pc = registry.prior(dom_name)
                        prior_e = _energies_per_condition(pm, x, [pc], draws=_ranking_draws(pm, draws))[:, 0]
                    other, other_name = prior_e, "(prior)"
                for i in range(n):
                    holds = bool(e[i, 0] < other[i])
                    ranking = sorted([(fam.values[0], float(e[i, 0])), (other_name, float(other[i]))], key=lambda t: t[1])
                    per_image[i][fam.name] = FamilyInference(fam.name, "binary", holds, float(e[i, 0]), ranking)
            else:
                for i, inf in enumerate(_ranked(fam, fam.values, e, e, "energy")):
                    per_image[i][fam.name] = inf
        else:
            context = None
            if joint and getattr(registry, "joint", None) is not None:
                context = [_context_refs(dom_name, dom, per_image[i]) for i in range(n)]
            best, best_e = _minimise_continuous(registry, dom_name, fam, x, coarse, refine_rounds, refine_points,
                                                context)
            for i in range(n):
                per_image[i][fam.name] = FamilyInference(
                    fam.name, "continuous", tuple(float(v) for v in best[i]), float(best_e[i])
                )

    if rerank and joint and getattr(registry, "joint", None) is not None:
        _rerank_in_context(registry, dom_name, dom, x, per_image, wanted, draws)

    seconds = (time.perf_counter() - t0) / n
    return [
        InferenceResult(dom_name, per_image[i], _labels_from(dom, per_image[i]), seconds, choice)
        for i in range(n)
    ]


def _ranked(fam, names: Sequence[str], energies: np.ndarray, scores: np.ndarray, readout: str) -> list[FamilyInference]:
    """One :class:`FamilyInference` per row of ``scores`` (N, J): the J conditions ``names`` ranked by
    score, lowest first, with the winner's energy. A one-value family's columns are its value, then
    what it is decided against: it holds when its value wins."""
    binary = len(fam.values) == 1
    out = []
    for e_row, s_row in zip(energies, scores):
        order = np.argsort(s_row, kind="stable")
        best = int(order[0])
        out.append(FamilyInference(
            fam.name, "binary" if binary else "discrete", (best == 0) if binary else fam.values[best],
            float(e_row[best]), [(names[j], float(s_row[j])) for j in order], readout=readout,
        ))
    return out


def _ranking_draws(model, draws: int | None) -> int | None:
    """Noise draws per level for ranking a discrete family with ``model``: ``draws`` when given, else
    the model's ``inference_draws``; None (the model's plain energy) for models without levels."""
    if not getattr(model, "has_energy_levels", False):
        return None
    return draws if draws is not None else getattr(model, "inference_draws", None)


def discrete_groups(registry, dom_name: str, fam) -> tuple[dict[int, tuple[Any, list[int], list]], bool]:
    """The conditions that decide a discrete family, grouped by the model that scores them.

    Returns ({model id: (model, columns, conditions)}, absent): column j is value j, −1 the
    family's known-absent condition, which a yes/no family gets (``absent``) when its model was
    trained with one. Values served by one model (a joint model serves them all) go into one
    stacked call; the known-absent condition rides along with the value, after it.
    """
    from conceptlang.interface import ConceptRef

    models = [registry.model_for(ConceptRef(dom_name, fam.name, value=v)) for v in fam.values]
    model0 = models[0][0]
    absent = len(fam.values) == 1 and has_absent_token(tuple(getattr(model0, "slots", ())), fam.name)
    groups: dict[int, tuple[Any, list[int], list]] = {}
    for j, (model, cond) in enumerate(models + ([(model0, {fam.name: ABSENT})] if absent else [])):
        _, cols, conds = groups.setdefault(id(model), (model, [], []))
        cols.append(j if j < len(fam.values) else -1)
        conds.append(cond)
    return groups, absent


def condition_names(fam, absent: bool) -> tuple[str, ...]:
    """Names of a discrete family's conditions in ranking order: its values, then ``(not)``."""
    return tuple(fam.values) + (("(not)",) if absent else ())


def energy_grid(model) -> tuple[float, ...]:
    """The σ levels of an implicit registered model's energy (what a readout is fitted on)."""
    return tuple(float(v) for v in model.impl().energy_sigmas)


@dataclass(frozen=True)
class Readout:
    """Calibrated weights over an implicit model's noise levels for one discrete family.

    A condition's score is ``Σ_l weights[l] · E_l(x | c) + bias[c]`` (lower wins), over the model's
    σ grid ``sigmas``; the conditions are the family's values, then ``(not)`` for a yes/no family
    with a known-absent token. Fitted by :mod:`conceptlang.inference.calibrate` on labelled
    generated images and stored in the manifest entry's ``inference.readout``.
    """

    weights: np.ndarray  # (S,)
    bias: np.ndarray  # (J,)
    sigmas: tuple[float, ...]
    conditions: tuple[str, ...]

    @classmethod
    def from_json(cls, d: dict, where: str) -> "Readout":
        try:
            out = cls(np.asarray(d["weights"], dtype=np.float64), np.asarray(d["bias"], dtype=np.float64),
                      tuple(float(v) for v in d["sigmas"]), tuple(str(c) for c in d["conditions"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{where}: malformed calibrated readout ({err}); recalibrate with `conceptlang calibrate`") from None
        if (out.weights.ndim != 1 or out.bias.shape != (len(out.conditions),) or len(out.sigmas) != out.weights.shape[0]
                or not (np.isfinite(out.weights).all() and np.isfinite(out.bias).all())):
            raise ModelError(f"{where}: malformed calibrated readout (weights {out.weights.shape}, bias {out.bias.shape}, "
                             f"{len(out.conditions)} conditions, {len(out.sigmas)} sigmas)")
        return out

    def to_json(self) -> dict:
        return {"weights": [float(v) for v in self.weights], "bias": [float(v) for v in self.bias],
                "sigmas": [float(v) for v in self.sigmas], "conditions": list(self.conditions)}


def _readout(groups: dict, fam, absent: bool) -> Readout | None:
    """The calibrated readout for ``fam`` when one implicit model with a stored readout scores all its conditions."""
    if len(groups) != 1:
        return None
    ((model, _cols, _conds),) = groups.values()
    get = getattr(model, "readout", None)
    d = get(fam.name) if get is not None and getattr(model, "has_energy_levels", False) else None
    if d is None:
        return None
    where = f"model {getattr(model, 'name', model)!r}, family {fam.name!r}"
    r = Readout.from_json(d, where)
    want = condition_names(fam, absent)
    if len(want) < 2:
        raise ModelError(f"{where}: a calibrated readout needs two or more conditions to rank; this yes/no family "
                         "has no known-absent token (remove the readout)")
    if r.conditions != want:
        raise ModelError(f"{where}: the calibrated readout covers {list(r.conditions)}, the family has {list(want)}; recalibrate")
    grid = energy_grid(model)
    if len(grid) != len(r.sigmas) or not np.allclose(grid, r.sigmas, rtol=1e-4):
        raise ModelError(f"{where}: the readout was calibrated on σ levels {[round(v, 4) for v in r.sigmas]}, "
                         f"the model's energy uses {[round(v, 4) for v in grid]}; recalibrate")
    return r


_SUPPORT_CACHE: dict[tuple[str, str], tuple[tuple[float, float], ...]] = {}


def parameter_support(dom_name: str, fam) -> tuple[tuple[float, float], ...]:
    """The range of each parameter of a continuous family in the domain's generated training data.

    Read off 2,000 generated label sets (deterministic, ~0.1 s); the family's declared ranges when
    the domain has no generator or its labels do not carry the parameters.
    """
    declared = tuple(tuple(r) for r in fam.ranges) or tuple((0.0, 1.0) for _ in fam.params)
    key = (dom_name, fam.name)
    if key not in _SUPPORT_CACHE:
        try:
            from conceptlang.data import generate

            _, labels = generate(dom_name, 2000, seed=0, split="train")
            vals = np.array([[o[p] for p in fam.params] for lab in labels for o in lab.get("objects", [])], dtype=float)
            if vals.ndim != 2 or not len(vals):
                raise KeyError(fam.name)
            lo, hi = vals.min(0), vals.max(0)
            _SUPPORT_CACHE[key] = tuple(
                (max(float(a), d[0]), min(float(b), d[1])) for a, b, d in zip(lo, hi, declared)
            )
        except (ConceptLangError, KeyError, TypeError, ValueError):
            _SUPPORT_CACHE[key] = declared
    return _SUPPORT_CACHE[key]


def _context_refs(dom_name: str, dom, inferred: dict[str, FamilyInference]) -> tuple:
    """The inferred discrete values of one image as concept refs (a yes/no family only when yes)."""
    from conceptlang.interface import ConceptRef

    refs = []
    for f in dom.families:
        inf = inferred.get(f.name)
        if inf is None or inf.kind == "continuous":
            continue
        if inf.kind == "binary":
            if inf.value:
                refs.append(ConceptRef(dom_name, f.name, value=f.values[0]))
        else:
            refs.append(ConceptRef(dom_name, f.name, value=inf.value))
    return tuple(refs)


def _rerank_in_context(registry, dom_name: str, dom, x, per_image: list[dict[str, FamilyInference]],
                       wanted: Sequence[str], draws: int | None) -> None:
    """Rank each inferred discrete family of two or more values again, under the rest of its image's
    inferred description (continuous parameters included), in place; one pass, in family order, each
    family seeing the values already re-ranked before it.

    Only when the image has a continuous family inferred (the description then pins the object down)
    and the registry's ``joint`` hook serves every candidate with the family's own model; an image
    it cannot serve keeps its marginal ranking. The levels are weighed as the family's calibrated
    readout weighs them (its per-value bias belongs to the marginal energies and is left out);
    without a readout, the plain energy.
    """
    from conceptlang.interface import ConceptRef

    n = x.shape[0]
    if not any(f.kind == "continuous" and f.name in per_image[0] for f in dom.families):
        return
    for fam in dom.families:
        if fam.kind != "discrete" or len(fam.values) < 2 or fam.name not in wanted:
            continue
        groups, absent = discrete_groups(registry, dom_name, fam)
        if len(groups) != 1:
            continue
        ((model, _cols, _conds),) = groups.values()
        readout = _readout(groups, fam, absent)
        served, rows = [], []
        for i in range(n):
            ctx = [r for r in _context_refs(dom_name, dom, per_image[i]) if r.family != fam.name]
            ctx += [ConceptRef(dom_name, f.name, params=tuple(per_image[i][f.name].value))
                    for f in dom.families if f.kind == "continuous" and f.name in per_image[i]]
            got = [registry.joint(tuple(ctx) + (ConceptRef(dom_name, fam.name, value=v),)) for v in fam.values]
            if all(g is not None and g[0] is model for g in got):
                served.append(i)
                rows.append([g[1] for g in got])
        if not served:
            continue
        xs, ranking_draws = x[served], _ranking_draws(model, draws)
        if readout is not None:
            lv = _energies_rowwise(model, xs, rows, levels=True, draws=ranking_draws)  # (S', J, L)
            energies, scores = lv.sum(2), lv @ readout.weights
        else:
            energies = scores = _energies_rowwise(model, xs, rows, draws=ranking_draws)
        ranked = _ranked(fam, fam.values, energies, scores, "in context" if readout is None else "calibrated, in context")
        for k, i in enumerate(served):
            per_image[i][fam.name] = ranked[k]


def _minimise_continuous(registry, dom_name, fam, x, coarse, refine_rounds, refine_points, context=None):
    """Grid search, then local refinement, of a continuous family's parameters per image.

    ``context[i]``: concept refs to condition image i's search on as well (through the registry's
    ``joint`` hook); a point the hook cannot serve with the family's own model is scored alone.
    """
    from conceptlang.interface import ConceptRef

    n = x.shape[0]
    ranges = parameter_support(dom_name, fam)
    axes = [_grid_axis(lo, hi, coarse) for lo, hi in ranges]
    grid = [tuple(float(v) for v in p) for p in itertools.product(*axes)]
    model, _ = registry.model_for(ConceptRef(dom_name, fam.name, params=grid[0]))

    def cond_of(p, i=None):
        ref = ConceptRef(dom_name, fam.name, params=tuple(float(v) for v in p))
        if i is not None and context and context[i]:
            got = registry.joint(tuple(context[i]) + (ref,))
            if got is not None and got[0] is model:
                return got[1]
        m, c = registry.model_for(ref)
        if m is not model:
            raise ModelError(f"{fam.name} is served by more than one model; inference needs one")
        return c

    if context and any(context):
        e = _energies_rowwise(model, x, [[cond_of(p, i) for p in grid] for i in range(n)])  # (N, G)
    else:
        e = _energies_per_condition(model, x, [cond_of(p) for p in grid])  # (N, G)
    arg = e.argmin(axis=1)
    best = np.array([grid[j] for j in arg], dtype=np.float64)  # (N, P)
    best_e = e[np.arange(n), arg]
    step = np.array([(hi - lo) / coarse for lo, hi in ranges])
    lo_b = np.array([r[0] for r in ranges])
    hi_b = np.array([r[1] for r in ranges])
    half = (refine_points - 1) / 2
    offsets = np.array(list(itertools.product(*[np.arange(refine_points) - half] * len(ranges))))  # (J, P)
    for _ in range(refine_rounds):
        step = step / 2
        cand = np.clip(best[:, None, :] + offsets[None] * step / max(half, 1), lo_b, hi_b)  # (N, J, P)
        rows = [[cond_of(cand[i, j], i) for j in range(len(offsets))] for i in range(n)]
        e = _energies_rowwise(model, x, rows)  # (N, J)
        arg = e.argmin(axis=1)
        improved = e[np.arange(n), arg] < best_e
        best = np.where(improved[:, None], cand[np.arange(n), arg], best)
        best_e = np.minimum(best_e, e[np.arange(n), arg])
    return best, best_e


def _labels_from(dom, fams: dict[str, FamilyInference]) -> dict:
    """Inferred labels in the shared format: one object carrying every inferred value."""
    labels: dict = {}
    obj: dict = {}
    for f in dom.families:
        inf = fams.get(f.name)
        if inf is None:
            continue
        if inf.kind == "continuous":
            for p, v in zip(f.params, inf.value):
                obj[p] = v
        elif inf.kind == "binary":
            labels[f"{f.name}.{f.values[0]}"] = labels[f.values[0]] = bool(inf.value)
            obj[f.name] = bool(inf.value)
        else:
            for v in f.values:
                labels[f"{f.name}.{v}"] = labels[v] = v == inf.value
            obj[f.name] = inf.value
    labels["objects"] = [obj]
    return labels


def infer(image, registry=None, domain: str | None = None, **kwargs) -> InferenceResult:
    """Infer the concepts of one image (uint8 (H, W, 3) or float (C, H, W) in [-1, 1]).

    ``registry`` defaults to the shipped models. Returns labels and per-family energies.
    """
    if registry is None:
        from conceptlang.models.registry import load_registry

        registry = load_registry()
    x = _as_tensor(image)
    if x.shape[0] != 1:
        raise DataError(f"infer() takes one image; got {x.shape[0]} (use infer_batch)")
    return infer_batch(x, registry, domain, **kwargs)[0]
