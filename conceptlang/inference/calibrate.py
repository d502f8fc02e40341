"""Calibrated concept inference: weights over an implicit model's noise levels, fitted on labelled images.

An implicit model's energy is its denoising loss summed over a σ grid (the ELBO up to a constant).
Each level's share of that sum is not its share of the evidence about a concept: a smile or age
shows at σ ≥ 0.5 and hardly at σ ≈ 0.05, where glasses are clearest; the plain sum lets the
noisiest levels dominate. The readout
scores condition ``c`` as ``Σ_l w_l · E_l(x | c) + b_c`` — the plain energy is w = 1, b = 0 — with
``w`` shared by all of a family's conditions (it is still a reweighted energy, not a free
classifier) and fitted by multinomial logistic regression, regularised towards the plain energy,
on images generated with known labels (a seed other than the one accuracy is measured on).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conceptlang.errors import ModelError
from conceptlang.evaluation.stats import Proportion
from conceptlang.inference.inference import (
    Readout,
    _as_tensor,
    _energies_per_condition,
    _ranking_draws,
    condition_names,
    discrete_groups,
    energy_grid,
)

CALIBRATION_SEED = 2024  # measure_inference uses 12345: calibration and measurement never share images


@dataclass
class FamilyCalibration:
    family: str
    model: str  # the model whose manifest entry stores the readout
    readout: Readout
    n: int
    energy_heldout: Proportion  # the plain energy's accuracy on the held-out third
    calibrated_heldout: Proportion  # the readout fitted on the other two thirds, on the same third
    draws: int | None = None  # noise draws per σ level the level energies were estimated with

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "model": self.model,
            "n": self.n,
            "energy_heldout": self.energy_heldout.to_json(),
            "calibrated_heldout": self.calibrated_heldout.to_json(),
            "draws": self.draws,
            "readout": self.readout.to_json(),
        }


def family_conditions(registry, domain: str, family) -> tuple[Any, list, tuple[str, ...]]:
    """(model, conditions, names) for a discrete family served by one implicit model with level
    energies: the conditions inference ranks (:func:`conceptlang.inference.inference.discrete_groups`)."""
    groups, absent = discrete_groups(registry, domain, family)
    need_one = f"family {family.name!r}: calibration needs one implicit model serving all its values"
    if len(groups) != 1:
        raise ModelError(need_one)
    ((model, _cols, conds),) = groups.values()
    if not getattr(model, "has_energy_levels", False):
        raise ModelError(need_one)
    if len(family.values) == 1 and not absent:
        raise ModelError(f"family {family.name!r}: a yes/no family needs a model with a known-absent token")
    return model, conds, condition_names(family, absent)


def fit_levels(lv: np.ndarray, y: np.ndarray, l2: float = 0.1, iters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Fit (weights (S,), bias (J,)) so that argmin_j Σ_l w_l lv[i, j, l] + b_j predicts ``y[i]``.

    ``lv``: (N, J, S) per-level energies; ``y``: (N,) condition indices. The levels are
    standardised (per-image offsets removed, each level scaled by its spread) and the penalty
    ``l2 · (|w − w₀|² / |w₀|² + |b|²)`` (standardised units) pulls towards the plain energy w₀
    (= 1 in raw units), so with little data the readout stays the energy.
    """
    import torch

    if lv.ndim != 3 or y.shape != (lv.shape[0],) or lv.shape[0] < 2:
        raise ModelError(f"fit_levels: need (N, J, S) energies and (N,) labels with N ≥ 2, got {lv.shape}, {y.shape}")
    d = lv - lv.mean(axis=1, keepdims=True)  # softmax over conditions ignores per-image offsets
    scale = d.reshape(-1, d.shape[2]).std(axis=0) + 1e-12  # (S,)
    z = torch.as_tensor(d / scale, dtype=torch.float64)
    t = torch.as_tensor(y, dtype=torch.long)
    w0 = torch.as_tensor(scale, dtype=torch.float64)  # the plain energy in standardised units
    w = w0.clone().requires_grad_(True)
    b = torch.zeros(lv.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")
    norm = float(w0.pow(2).sum()) or 1.0

    def closure():
        opt.zero_grad()
        logits = -(z @ w + b)  # (N, J)
        loss = torch.nn.functional.cross_entropy(logits, t) + l2 * ((w - w0).pow(2).sum() / norm + b.pow(2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    weights = w.detach().numpy() / scale
    if not (np.isfinite(weights).all() and np.isfinite(b.detach().numpy()).all()):
        raise ModelError("fit_levels: the fit diverged")
    return weights, b.detach().numpy().copy()


def _accuracy(lv: np.ndarray, y: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> Proportion:
    pred = (lv @ weights + bias).argmin(axis=1)
    return Proportion(int((pred == y).sum()), len(y))


def calibrate_domain(registry, domain: str, n: int = 256, seed: int = CALIBRATION_SEED, device: str = "cpu",
                     batch: int = 32, l2: float = 0.1, draws: int | None = None) -> list[FamilyCalibration]:
    """Fit a readout for every discrete family of ``domain`` served by one implicit model.

    ``draws``: noise draws per σ level (default: the model's ``inference_draws``, what inference
    ranks with, so the readout is fitted on energies estimated as they will be read).

    Held-out figures: the readout is fitted on the first two thirds of the images and scored on the
    last third, beside the plain energy on the same third; the stored readout is then refitted on
    all ``n`` images.
    """
    from conceptlang.data import generate

    dom = registry.domain(domain)
    images, arrays = generate(domain, n, seed=seed, split="train", as_arrays=True)
    x = _as_tensor(images).to(device)
    out = []
    cut = (2 * n) // 3
    for fam in dom.families:
        if fam.kind != "discrete":
            continue
        model, conds, names = family_conditions(registry, domain, fam)
        d = _ranking_draws(model, draws)
        lv = np.concatenate([_energies_per_condition(model, x[s:s + batch], conds, levels=True, draws=d)
                             for s in range(0, n, batch)])  # (N, J, S)
        idx = np.asarray(arrays.index[fam.name])[:, 0]  # the (one) object's value index, −1: absent
        y = np.where(idx == 0, 0, 1) if len(fam.values) == 1 else idx  # yes/no: the value, else "(not)"
        if (y < 0).any():
            raise ModelError(f"family {fam.name!r}: some calibration images carry no value of it")
        s_count = lv.shape[2]
        plain = _accuracy(lv[cut:], y[cut:], np.ones(s_count), np.zeros(len(names)))
        w, b = fit_levels(lv[:cut], y[:cut], l2)
        held = _accuracy(lv[cut:], y[cut:], w, b)
        w, b = fit_levels(lv, y, l2)
        out.append(FamilyCalibration(fam.name, model.name, Readout(w, b, energy_grid(model), names), n, plain, held, d))
    return out


def write_readouts(models_dir: str | Path, model_name: str, calibrations: list[FamilyCalibration],
                   info: dict[str, Any] | None = None) -> Path:
    """Store the readouts in ``model_name``'s manifest entry (``inference.readout``), atomically."""
    from conceptlang.models.manifest import MANIFEST, update_manifest

    def store(data: dict) -> None:
        for entry in data["models"]:
            if isinstance(entry, dict) and entry.get("name") == model_name:
                inf = entry.setdefault("inference", {})
                inf["readout"] = {c.family: c.readout.to_json() for c in calibrations}
                inf["calibration"] = {
                    **(info or {}),
                    "families": {c.family: {"n": c.n, "energy_heldout": round(c.energy_heldout.value, 4),
                                            "calibrated_heldout": round(c.calibrated_heldout.value, 4)}
                                 for c in calibrations},
                }
                return
        raise ModelError(f"no model named {model_name!r} in {Path(models_dir) / MANIFEST}")

    update_manifest(models_dir, store)
    return Path(models_dir) / MANIFEST


def calibrate_and_store(models_dir: str | Path, domain: str, n: int = 256, seed: int = CALIBRATION_SEED,
                        device: str = "cpu", draws: int | None = None) -> list[FamilyCalibration]:
    """Calibrate ``domain``'s model in ``models_dir`` and write the readouts into its manifest."""
    from conceptlang.models.registry import load_registry

    registry = load_registry(models_dir)
    t0 = time.perf_counter()
    cals = calibrate_domain(registry, domain, n=n, seed=seed, device=device, draws=draws)
    if not cals:
        raise ModelError(f"domain {domain!r}: no discrete family is served by one implicit model; nothing to calibrate")
    info = {"seed": seed, "n": n, "split": "train", "seconds": round(time.perf_counter() - t0, 1)}
    for name in sorted({c.model for c in cals}):
        mine = [c for c in cals if c.model == name]
        write_readouts(models_dir, name, mine, {**info, "draws": mine[0].draws})
    return cals
