"""Analytic Gaussian concept models: exact answers for testing the compiler and the samplers.

Every concept of the small ``gauss`` domain is an isotropic Gaussian over a 2-dimensional
"image" of shape ``(C, H, W) = (2, 1, 1)`` — two channels of one pixel, so a sample is a point
in the plane and the whole pipeline (compile → sample → PNG grid) runs on it unchanged. Because
products, mixtures and convolutions of Gaussians are Gaussians with closed forms, tests can
compare sampled moments and branch shares with exact values.

Three kinds, all implementing :class:`conceptlang.interface.ConceptModel`:

* ``"explicit"``: E(x | c) = ‖x − μ_c‖² / (2 s_c²) (not noise-conditional).
* ``"noise_conditional"``: the exact energy of the Gaussian convolved with N(0, σ²),
  E(x | c, σ) = ‖x − μ_c‖² / (2 (s_c² + σ²)), so annealed Langevin has an exact target at
  every noise level.
* ``"implicit"``: a noise predictor ε̂(x, c, σ) = σ (x − μ_c) / (s_c² + σ²) (the exact
  posterior-mean noise), so score = −ε̂/σ; its ``energy`` is the seeded denoising-loss estimate
  that docs/design.md prescribes for implicit models.

Layouts: ``joint=True`` gives one model for the whole domain (a condition names its family
slot, the empty condition is the prior); ``joint=False`` gives one model per family plus a
separate prior model — so the compiler's per-model batching is tested in both layouts.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from conceptlang.data.domain import Domain, Family
from conceptlang.errors import ModelError
from conceptlang.interface import DRAWN, ConceptModel, ConceptRef, Condition, Drawn

GAUSS_SHAPE = (2, 1, 1)  # (C, H, W): one pixel, two channels = a point in the plane


@dataclass(frozen=True)
class Gaussian:
    """An isotropic Gaussian N(mean, scale² I) in the plane."""

    mean: tuple[float, float]
    scale: float


# The gauss domain: names chosen to look like the scenes domain, so CLI and explain output read
# naturally. Means are well inside [-1, 1] so the sampler's clamp never touches the bulk.
GAUSS_CONCEPTS: dict[str, dict[str, Gaussian]] = {
    "color": {
        "red": Gaussian((-0.5, 0.0), 0.12),
        "green": Gaussian((0.5, 0.0), 0.12),
        "blue": Gaussian((0.0, 0.5), 0.12),
    },
    "shape": {
        "circle": Gaussian((-0.2, 0.2), 0.2),
        "square": Gaussian((0.2, -0.2), 0.1),
    },
    # Broad concepts: negating one keeps products proper (precision 1/0.3² · α < 1/s² of the others).
    "size": {
        "small": Gaussian((0.0, -0.4), 0.3),
        "large": Gaussian((0.0, 0.4), 0.3),
    },
}
# The unconditional model; ~large grounded by it stays proper for α < 0.73 (1/0.35² > α/0.3²).
GAUSS_PRIOR = Gaussian((0.0, 0.0), 0.35)
POSITION_SCALE = 0.1  # position(x, y) is N((2x − 1, 2y − 1), 0.1²)

GAUSS_DOMAIN = Domain(
    name="gauss",
    image_size=1,
    channels=2,
    families=(
        Family("color", "discrete", values=("red", "green", "blue"), exclusive=True,
               description="three well-separated Gaussians"),
        Family("shape", "discrete", values=("circle", "square"), exclusive=True),
        Family("size", "discrete", values=("small", "large"), exclusive=True),
        Family("position", "continuous", params=("x", "y"), ranges=((0.0, 1.0), (0.0, 1.0))),
    ),
    description="analytic Gaussian concepts over a 2-D point (2 channels × 1 × 1 pixel), for exact tests",
)


def gaussian_for(condition: Condition) -> Gaussian:
    """The Gaussian a condition denotes: the prior for the empty condition, the concept's Gaussian
    for one family, and for several families (a joint condition) the prior-corrected product
    ∏ N(μ_i, s_i²) / N(μ_prior, s_prior²)^{k−1}, the conditional of concepts that are independent
    given the image — so and_mode "joint" has an exact answer too."""
    if len(condition) == 0:
        return GAUSS_PRIOR
    if len(condition) > 1:
        if len(set(condition)) != len(condition):
            raise ModelError(f"a joint condition takes one value per family, got {dict(condition)!r}")
        parts = [(1.0, gaussian_for({f: v})) for f, v in condition.items()]
        mean, var = product_of(parts + [(1.0 - len(parts), GAUSS_PRIOR)])
        return Gaussian(mean, math.sqrt(var))
    (family, value), = condition.items()
    if family == "position":
        x, y = value  # type: ignore[misc]
        return Gaussian((2.0 * float(x) - 1.0, 2.0 * float(y) - 1.0), POSITION_SCALE)
    try:
        return GAUSS_CONCEPTS[family][value]  # type: ignore[index]
    except KeyError:
        raise ModelError(f"gauss domain has no concept {family}.{value}") from None


class GaussianConceptModel:
    """One model over some families of the gauss domain (see the module docstring for kinds)."""

    image_shape = GAUSS_SHAPE

    def __init__(self, name: str, kind: str, families: Sequence[str] | None, *,
                 loss_sigmas: Sequence[float] = (0.05, 0.2, 0.5), loss_draws: int = 4, loss_seed: int = 0):
        if kind not in ("explicit", "noise_conditional", "implicit"):
            raise ModelError(f"unknown gauss model kind {kind!r}")
        self.name = name
        self.domain = "gauss"
        self.variant = kind
        self.kind = "implicit" if kind == "implicit" else "explicit"
        self.noise_conditional = kind != "explicit"
        self.families = None if families is None else tuple(families)
        self.forward_calls = 0  # counts batched evaluations (tests check one call per model per step)
        self.forward_rows = 0  # rows evaluated (one point under one condition): the sampler's nfe
        self._loss_sigmas = tuple(loss_sigmas)
        self._loss_draws = loss_draws
        self._loss_seed = loss_seed

    # -- ConceptModel protocol ---------------------------------------------------------------
    def encode(self, conditions: Sequence[Condition]) -> torch.Tensor:
        """(L, 3): mean x, mean y, scale of each condition's Gaussian."""
        rows = []
        for cond in conditions:
            if self.families is not None and any(f not in self.families for f in cond):
                raise ModelError(f"model {self.name} does not know families {sorted(cond)}")
            g = gaussian_for({f: v for f, v in cond.items() if not isinstance(v, Drawn)})  # drawn: the marginal
            rows.append([g.mean[0], g.mean[1], g.scale])
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 3)

    def _var(self, cond: torch.Tensor, sigma: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        var = cond[:, 2].to(dtype) ** 2  # (N,), in the images' precision (float64 tests are exact)
        if self.noise_conditional:
            if sigma is None:
                raise ModelError(f"noise-conditional model {self.name} needs sigma")
            var = var + sigma.to(dtype) ** 2
        return var

    def _diff(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        mean = cond[:, :2].to(x.dtype).view(-1, 2, 1, 1)
        return x - mean  # (N, 2, 1, 1)

    def energy(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        self.forward_calls += 1
        self.forward_rows += x.shape[0] * (len(self._loss_sigmas) * self._loss_draws if self.kind == "implicit" else 1)
        cond = cond.to(x.device)
        if self.kind == "implicit":
            return self._denoising_loss(x, cond)
        var = self._var(cond, sigma, x.dtype)
        return self._diff(x, cond).pow(2).flatten(1).sum(1) / (2.0 * var)  # (N,)

    def score(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        self.forward_calls += 1
        self.forward_rows += x.shape[0]
        cond = cond.to(x.device)
        if self.kind == "implicit":
            if sigma is None:
                raise ModelError(f"implicit model {self.name} needs sigma to predict noise")
            eps = self.predict_noise(x, cond, sigma)
            return -eps / sigma.to(x.dtype).view(-1, 1, 1, 1)
        var = self._var(cond, sigma, x.dtype).view(-1, 1, 1, 1)
        return -self._diff(x, cond) / var  # (N, 2, 1, 1)

    # -- implicit parameterisation -------------------------------------------------------------
    def predict_noise(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The exact posterior-mean noise E[ε | x_σ = x] for a Gaussian concept: σ (x − μ) / (s² + σ²)."""
        s2 = cond[:, 2].to(x.dtype) ** 2
        sig = sigma.to(x.dtype)
        coef = (sig / (s2 + sig**2)).view(-1, 1, 1, 1)
        return coef * self._diff(x, cond)

    def _denoising_loss(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Seeded denoising loss averaged over fixed σ and noise draws (docs/design.md, "Model kinds")."""
        gen = torch.Generator(device="cpu").manual_seed(self._loss_seed)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        count = 0
        for s in self._loss_sigmas:
            for _ in range(self._loss_draws):
                # One draw shared by every row, as the shipped implicit models do: a row's energy
                # does not depend on which other rows share its batch.
                eps = torch.randn((1,) + tuple(x.shape[1:]), generator=gen).to(device=x.device, dtype=x.dtype).expand_as(x)
                sig = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)
                pred = self.predict_noise(x + s * eps, cond, sig)
                total = total + (pred - eps).pow(2).flatten(1).sum(1)
                count += 1
        return total / count

    def to(self, device: torch.device | str) -> "GaussianConceptModel":
        return self  # parameter-free: conditions are moved by the caller

    def __repr__(self) -> str:
        return f"GaussianConceptModel({self.name!r}, {self.variant})"


class GaussianRegistry:
    """A :class:`~conceptlang.interface.ConceptRegistry` over the analytic gauss domain.

    ``kind`` is ``"explicit"`` (default), ``"noise_conditional"`` or ``"implicit"``; ``joint``
    picks one model for the domain (default) or one per family plus a prior model.
    """

    def __init__(self, kind: str = "explicit", joint: bool = True, settings: Mapping | None = None):
        self.kind = kind
        self.layout = "joint" if joint else "per-family"
        if joint:
            model = GaussianConceptModel(f"gauss-joint-{kind}", kind, None)
            self.models = {f.name: model for f in GAUSS_DOMAIN.families}
            self.prior_model = model
        else:
            self.models = {f.name: GaussianConceptModel(f"gauss-{f.name}-{kind}", kind, (f.name,))
                           for f in GAUSS_DOMAIN.families}
            self.prior_model = GaussianConceptModel(f"gauss-prior-{kind}", kind, ())
        self._settings = dict(settings or {})

    # -- ConceptRegistry protocol ----------------------------------------------------------------
    def candidates(self, name: str, family: str | None = None) -> list[ConceptRef]:
        out = []
        for fam in GAUSS_DOMAIN.families:
            if family is not None and fam.name != family:
                continue
            if fam.kind == "continuous":
                if name == fam.name and family is None:
                    out.append(ConceptRef("gauss", fam.name))
            elif name in fam.values:
                out.append(ConceptRef("gauss", fam.name, value=name))
        return out

    def known_names(self) -> list[str]:
        names = []
        for fam in GAUSS_DOMAIN.families:
            if fam.kind == "continuous":
                names.append(fam.name)
            else:
                for v in fam.values:
                    names += [v, f"{fam.name}.{v}"]
        return names

    def model_for(self, ref: ConceptRef) -> tuple[ConceptModel, Condition]:
        if ref.domain != "gauss" or ref.family not in self.models:
            raise ModelError(f"no gauss model for {ref.domain}/{ref.qualified}")
        if ref.drawn:
            return self.models[ref.family], {ref.family: DRAWN if ref.params is None
                                             else Drawn(tuple(ref.params), away=ref.away, avoid=tuple(ref.avoid))}
        value = tuple(ref.params) if ref.params is not None else ref.value
        return self.models[ref.family], {ref.family: value}

    def joint(self, refs: Sequence[ConceptRef]) -> tuple[ConceptModel, Condition] | None:
        """The joint layout's model conditioned on all of ``refs`` (one value per family), else None."""
        if self.layout != "joint" or len(refs) < 2 or len({r.family for r in refs}) != len(refs):
            return None
        cond: dict = {}
        for r in refs:
            cond.update(self.model_for(r)[1])
        return self.prior_model, cond

    def prior(self, domain: str) -> tuple[ConceptModel, Condition]:
        if domain != "gauss":
            raise ModelError(f"the gauss registry has no domain {domain!r}")
        return self.prior_model, {}

    def domain(self, name: str) -> Domain:
        if name != "gauss":
            close = difflib.get_close_matches(name, ["gauss"])
            raise ModelError(f"unknown domain {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        return GAUSS_DOMAIN

    def domains(self) -> list[str]:
        return ["gauss"]

    def sampler_settings(self, models: Sequence[ConceptModel]) -> dict:
        """Settings tuned for these Gaussians (smallest scale 0.1 → precision 100)."""
        settings: dict = {
            "sampler": "annealed" if self.kind != "explicit" else "langevin",
            "steps": 400,
            "step_size": 1e-4,
            "sigma_max": 1.0,
            "sigma_min": 0.01,
            "n_sigmas": 10,
        }
        settings.update(self._settings)
        return settings

    # -- exact answers for tests ----------------------------------------------------------------
    @staticmethod
    def gaussian(ref_or_condition: ConceptRef | Condition) -> Gaussian:
        if isinstance(ref_or_condition, ConceptRef):
            ref = ref_or_condition
            return gaussian_for({ref.family: ref.params if ref.params is not None else ref.value})
        return gaussian_for(ref_or_condition)

    @staticmethod
    def log_partition(g: Gaussian) -> float:
        """log ∫ exp(−‖x − μ‖²/(2s²)) dx over the plane = log(2π s²)."""
        return math.log(2.0 * math.pi * g.scale**2)


def product_of(weighted: Sequence[tuple[float, Gaussian]]) -> tuple[tuple[float, float], float]:
    """Mean and per-coordinate variance of ∏ N(μ_i, s_i²)^{w_i} (precision-weighted)."""
    prec = sum(w / g.scale**2 for w, g in weighted)
    if prec <= 0:
        raise ValueError("the weighted product has no positive precision (improper)")
    mx = sum(w * g.mean[0] / g.scale**2 for w, g in weighted) / prec
    my = sum(w * g.mean[1] / g.scale**2 for w, g in weighted) / prec
    return (mx, my), 1.0 / prec
