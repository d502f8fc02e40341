"""Concept models: a network plus its condition slots, behind the compiler's ``ConceptModel`` protocol.

* :class:`ImplicitConceptModel` wraps a noise-predicting U-Net. Its score at noise level σ is
  −ε̂(x, σ, c)/σ. Its *energy* (for inference, ``explain`` and log-sum-exp) is the seeded denoising
  loss: with the VE diffusion ELBO, −log p(x | c) ≈ const + ∫ E‖ε̂(x + σn, σ, c) − n‖² d ln σ, so
  the energy is (ln σ_max − ln σ_min) × the mean over a fixed log-spaced σ grid and fixed noise
  draws of the summed squared noise error. The same noise is used for every image and every
  condition (common random numbers), so energy *differences* between conditions are low-variance.
* :class:`ExplicitConceptModel` wraps a scalar energy net; its score is −∇ₓE by autograd.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from conceptlang.errors import ModelError
from conceptlang.interface import Condition
from conceptlang.models.conditions import encode_conditions
from conceptlang.models.manifest import GuidanceSettings, turns_description
from conceptlang.models.networks import EnergyNet, SlotSpec, UNet, condition_width, slot_offsets


class _Base:
    kind: str
    noise_conditional: bool

    def __init__(self, name: str, domain: str, slots: tuple[SlotSpec, ...], image_shape: tuple[int, int, int]):
        self.name = name
        self.domain = domain
        self.slots = slots
        self.image_shape = image_shape
        # Rows pushed through the network so far (one image under one condition at one noise level,
        # forward passes only): the sampler's record reports evaluations per chain from it.
        self.forward_rows = 0

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device  # type: ignore[attr-defined]

    def encode(self, conditions: Sequence[Condition]) -> torch.Tensor:
        """Stack conditions into the condition tensor (L, D), on the model's device."""
        return encode_conditions(self.slots, conditions).to(self.device)

    def _check(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ModelError(f"{self.name}: expected images (N, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")
        if cond.ndim != 2 or cond.shape[0] != x.shape[0]:
            raise ModelError(f"{self.name}: condition tensor must be (N, D) with N = {x.shape[0]}, got {tuple(cond.shape)}")
        if sigma is not None and (sigma.ndim != 1 or sigma.shape[0] != x.shape[0]):
            raise ModelError(f"{self.name}: sigma must be (N,) with N = {x.shape[0]}, got {tuple(sigma.shape)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, domain={self.domain!r})"


def _distinct_rows(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Group identical rows of ``key`` (N, K): (index of each group's first row (U,), group of each row (N,))."""
    _, inv = torch.unique(key, dim=0, return_inverse=True)
    u = int(inv.max()) + 1
    first = torch.full((u,), key.shape[0], dtype=torch.long, device=key.device)
    return first.scatter_reduce(0, inv, torch.arange(key.shape[0], device=key.device), reduce="amin"), inv


CUDA_BF16 = False
"""When set, sampling on CUDA runs the network body in bf16 autocast (see :meth:`ImplicitConceptModel.raw_eps`)."""
CUDA_CHANNELS_LAST = False
"""When set, sampling on CUDA keeps the network and its inputs channels-last. Both switches are off: on an H200
neither made the shipped 32×32 U-Nets' sampling faster (docs/compiler.md, "Cheaper evaluations");
benchmarks/bench_sampling.py sets them per configuration (``cuda_bf16=true``, ``cuda_channels_last=true``)."""


def _forward(net: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """``net``'s noise prediction (see :meth:`ImplicitConceptModel.raw_eps` for the CUDA path)."""
    sigma, cond = sigma.to(x.device, x.dtype), cond.to(x.device, x.dtype)
    if x.device.type == "cuda" and torch.is_inference_mode_enabled():
        fmt = torch.channels_last if CUDA_CHANNELS_LAST else torch.contiguous_format
        if getattr(net, "_memory_format", torch.contiguous_format) != fmt:
            net.to(memory_format=fmt)
            net._memory_format = fmt
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=CUDA_BF16):
            out = net(x.contiguous(memory_format=fmt), sigma, cond)
        return out.to(x.dtype).contiguous()
    return net(x, sigma, cond)


def _by_rows(mask: torch.Tensor, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor, where_true, where_false) -> torch.Tensor:
    """``where_true`` on the rows where ``mask`` holds and ``where_false`` on the others, each called
    once on its rows (not at all when it has none): (N, C, H, W)."""
    if bool(mask.all()):
        return where_true(x, cond, sigma)
    if not bool(mask.any()):
        return where_false(x, cond, sigma)
    out = torch.empty_like(x)
    out[mask] = where_true(x[mask], cond[mask], sigma[mask])
    rest = ~mask
    out[rest] = where_false(x[rest], cond[rest], sigma[rest])
    return out


def _reflect(cond: torch.Tensor, columns: tuple[tuple[int, int, float], ...]) -> torch.Tensor:
    """``cond`` (changed in place and returned) with v → lo + hi − v in each (flag, column, lo + hi) where the flag is set."""
    for flag, col, total in columns:
        present = cond[:, flag] > 0.5
        cond[:, col] = torch.where(present, total - cond[:, col], cond[:, col])
    return cond


class ImplicitConceptModel(_Base):
    kind = "implicit"
    noise_conditional = True

    def __init__(
        self,
        net: UNet,
        name: str,
        domain: str,
        energy_sigmas: tuple[float, float, int] = (0.02, 2.0, 8),
        energy_draws: int = 2,
        energy_seed: int = 0,
        guidance: float = 1.0,
        guidance_interval: tuple[float, float] | None = None,
        sampling_guidance: float | None = None,
        prior_below: float | None = None,
        prior_keeps: Sequence[str] = (),
    ):
        cfg = net.config
        super().__init__(name, domain, cfg.slots, (cfg.channels, cfg.image_size, cfg.image_size))
        self.net = net.eval()
        lo, hi, k = energy_sigmas
        if not (0 < lo < hi) or k < 1 or energy_draws < 1:
            raise ModelError(f"{name}: bad energy settings sigmas={energy_sigmas}, draws={energy_draws}")
        self.energy_sigmas = torch.exp(torch.linspace(math.log(lo), math.log(hi), k))  # (S,)
        self.energy_span = math.log(hi / lo)
        self.energy_draws = energy_draws
        self.energy_seed = energy_seed
        if not (math.isfinite(guidance) and guidance > 0):
            raise ModelError(f"{name}: guidance must be a finite number > 0, got {guidance!r}")
        self.guidance = float(guidance)
        # The weight sampling applies (scores, see eps()); energies keep ``guidance``, the weight the
        # calibrated inference readouts were fitted on. None: ``guidance`` for both.
        if sampling_guidance is not None and not (math.isfinite(sampling_guidance) and sampling_guidance > 0):
            raise ModelError(f"{name}: sampling_guidance must be a finite number > 0, got {sampling_guidance!r}")
        self.sampling_guidance = float(guidance if sampling_guidance is None else sampling_guidance)
        # Noise levels at which sampling applies the guidance (None: every level); see eps().
        self.guidance_interval: tuple[float, float] | None = None
        if guidance_interval is not None:
            self.set_guidance_interval(*guidance_interval)
        # Sampling below this noise level follows the model's own prior, or only the conditions of
        # ``prior_keeps`` (see set_prior_below); None: never.
        self.prior_below: float | None = None
        self.prior_keeps: tuple[str, ...] = ()
        self._kept_columns = torch.zeros(0, dtype=torch.long)
        if prior_below is not None:
            self.set_prior_below(prior_below, prior_keeps)
        elif prior_keeps:
            raise ModelError(f"{name}: prior_keeps needs prior_below (the noise level below which it applies)")
        # Noise levels the model's conditions act at (see set_sigma_range); None: every level.
        self.sigma_range: tuple[float, float] | None = None
        self.fallback: "ImplicitConceptModel | None" = None
        # Autoguidance (see set_autoguide): a weaker network of the same conditions, its weight, its σ interval.
        self.guide: torch.nn.Module | None = None
        self.guide_weight = 1.0
        self.guide_interval: tuple[float, float] | None = None
        # Mirror averaging (see set_mirror): the level below which sampling averages the prediction
        # with its mirror image's, and the condition columns reflected: (flag, column, lo + hi).
        self.mirror_below: float | None = None
        self.mirror_reflect: tuple[str, ...] = ()
        self._mirror_columns: tuple[tuple[int, int, float], ...] = ()
        # Quarter turns (see set_mirror's ``turns``): the rows they hold for (column, tokens), the
        # up-down flip's reflected columns (flag, column, lo + hi), the transpose's swapped pair.
        self.mirror_turns: tuple | None = None
        self._turn_rows: tuple[tuple[int, tuple[float, ...]], ...] = ()
        self._turn_reflect: tuple[tuple[int, int, float], ...] = ()
        self._turn_swap: tuple[int, int, int] | None = None

    def set_mirror(self, below: float, reflect: Sequence[str] = (), turns: Mapping[str, Any] | None = None) -> None:
        """Below noise level ``below``, sample with ε̂(x) averaged with the mirror image of ε̂ at the
        mirror image of x: ½·(ε̂(x | c) + M ε̂(M x | M c)), M the left-right flip of the image and, in
        the condition, of each ``reflect`` parameter ("family.param") within its range (v → lo + hi − v).

        Valid where the data is left-right symmetric with those parameters reflected: then the true
        prediction is mirror-equivariant and the average keeps it, while the network's own error,
        which the flip does not carry along, is averaged over two views. Each averaged row costs a
        second network pass. Energies are not averaged.

        ``turns`` ({"when": {family: [values]}, "reflect": [...], "swap": [p, q]}) states that rows
        whose condition holds one of ``when``'s values for each of its families are also symmetric
        under the up-down flip V (reflecting ``turns.reflect``) and the transpose T (exchanging the
        parameters ``swap``), so under every quarter turn of a square image. Such a row's mirror pair
        is then taken in the orientation g = V^b₀·T^b₁, k = b₀ + 2·b₁ = ⌊log₂(below/σ)⌋ mod 4:
        g⁻¹·½(ε̂(g x | g c) + M ε̂(M g x | M g c)), so that successive octaves of σ below ``below``
        see the network from four orientations, the first as it is, at no extra network rows."""
        if isinstance(below, bool) or not (math.isfinite(below) and below >= 0):
            raise ModelError(f"{self.name}: the mirror's noise level must be >= 0, got {below!r}")
        cols = self._reflected_columns(reflect, "the mirror")
        parsed = None if turns is None else self._parse_turns(turns)
        self.mirror_below = float(below)
        self.mirror_reflect = tuple(reflect)
        self._mirror_columns = cols
        self.mirror_turns = None
        self._turn_rows, self._turn_reflect, self._turn_swap = (), (), None
        if parsed is not None:
            self.mirror_turns, self._turn_rows, self._turn_reflect, self._turn_swap = parsed

    def _param_columns(self, names: Sequence[str], what: str) -> list[tuple[int, int, tuple[float, float]]]:
        """(presence flag, column, (lo, hi)) of each "family.param" in ``names``."""
        offsets = slot_offsets(self.slots)
        out = []
        for name in names:
            fam, _, param = name.partition(".")
            slot = next((s for s in self.slots if s.family == fam and s.kind == "continuous"), None)
            if slot is None or param not in slot.params:
                raise ModelError(f"{self.name}: {what} names {name!r}, which is not a parameter of a "
                                 "continuous family of the model")
            j = slot.params.index(param)
            lo, hi = slot.ranges[j]
            out.append((offsets[fam], offsets[fam] + 1 + j, (float(lo), float(hi))))
        return out

    def _reflected_columns(self, names: Sequence[str], what: str) -> tuple[tuple[int, int, float], ...]:
        """(presence flag, column, lo + hi) of each "family.param" in ``names``: what a reflection needs."""
        return tuple((flag, col, lo + hi) for flag, col, (lo, hi) in self._param_columns(names, what))

    def _parse_turns(self, turns: Mapping[str, Any]) -> tuple:
        """set_mirror's ``turns`` → (its description, row tests, reflected columns, swapped columns)."""
        _, h, w = self.image_shape
        if h != w:
            raise ModelError(f"{self.name}: quarter turns need a square image, not {h}×{w}")
        offsets = slot_offsets(self.slots)
        when = turns.get("when") or {}
        rows = []
        for fam, values in when.items():
            slot = next((s for s in self.slots if s.family == fam and s.kind == "discrete"), None)
            if slot is None or not values or any(v not in slot.values for v in values):
                raise ModelError(f"{self.name}: the turns' condition {fam!r}: {values!r} does not name values of "
                                 "a discrete family of the model")
            rows.append((offsets[fam], tuple(float(slot.values.index(v) + 1) for v in values)))
        if not rows:
            raise ModelError(f"{self.name}: the turns need 'when', the rows they hold for")
        reflect = tuple(turns.get("reflect", ()))
        reflect_cols = self._reflected_columns(reflect, "the up-down flip")
        swap = tuple(turns.get("swap", ()))
        pair = self._param_columns(swap, "the transpose")
        if len(pair) != 2 or pair[0][0] != pair[1][0] or pair[0][1] == pair[1][1] or pair[0][2] != pair[1][2]:
            raise ModelError(f"{self.name}: the transpose must swap two parameters of one continuous family with "
                             f"the same range, got {list(swap)!r}")
        return turns_description(turns), tuple(rows), reflect_cols, (pair[0][0], pair[0][1], pair[1][1])

    def mirrored_condition(self, cond: torch.Tensor) -> torch.Tensor:
        """``cond`` (N, D) with each reflected parameter v → lo + hi − v where its family is set."""
        return _reflect(cond.clone(), self._mirror_columns)

    def turn_index(self, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """(N,) long: each row's orientation k (0: as it is) under the ``turns`` of set_mirror."""
        k = torch.zeros(cond.shape[0], dtype=torch.long, device=cond.device)
        if self._turn_swap is None:
            return k
        held = sigma < self.mirror_below
        for col, tokens in self._turn_rows:
            held &= torch.isin(cond[:, col], torch.tensor(tokens, dtype=cond.dtype, device=cond.device))
        octave = torch.floor(torch.log2(self.mirror_below / sigma.clamp_min(1e-12))).long() % 4
        return torch.where(held, octave, k)

    def turned(self, x: torch.Tensor, cond: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and condition in orientation k (set_mirror): the transpose if k & 2, then the up-down flip if k & 1."""
        cond = cond.clone()
        if k & 2:
            flag, a, b = self._turn_swap
            present = cond[:, flag] > 0.5
            ca, cb = cond[:, a].clone(), cond[:, b].clone()
            cond[:, a] = torch.where(present, cb, ca)
            cond[:, b] = torch.where(present, ca, cb)
            x = x.transpose(-1, -2)
        if k & 1:
            cond = _reflect(cond, self._turn_reflect)
            x = x.flip(-2)
        return x, cond

    @staticmethod
    def unturned(e: torch.Tensor, k: int) -> torch.Tensor:
        """An image-shaped prediction made in orientation k, back in the image's own."""
        if k & 1:
            e = e.flip(-2)
        if k & 2:
            e = e.transpose(-1, -2)
        return e.contiguous()

    def set_guidance_interval(self, lo: float, hi: float) -> None:
        """Apply guidance w only while sampling at lo ≤ σ ≤ hi; elsewhere the score is the plain
        conditional (w = 1), which also skips the prior's network pass there.

        Guidance at high noise pulls every chain to the conditional's mode while the coarse
        attributes (colour, size, hair, sex) are decided; limited to an interval it sharpens the
        concept where its details form (Kynkäänniemi et al. 2024, "Applying guidance in a limited
        interval improves sample and distribution quality in diffusion models"). Energies keep w at
        every level: the calibrated inference readouts were fitted on them.
        """
        lo, hi = float(lo), float(hi)
        if not (0.0 <= lo < hi):
            raise ModelError(f"{self.name}: guidance interval must have 0 <= lo < hi, got [{lo}, {hi}]")
        self.guidance_interval = (lo, hi)

    def set_prior_below(self, sigma: float, keeps: Sequence[str] = ()) -> None:
        """While sampling at σ < ``sigma``, score every condition as the model's null condition (its
        prior), or with ``keeps`` as the condition of those families alone (the other slots null),
        unguided; at σ ≥ ``sigma`` the conditions act as usual.

        By the last noise levels the object, its colour and its place are settled and what is left is
        cleaning the outline and the flat colour. The unconditional denoiser has learned that from
        every image, while a conditional denoiser asked for a combination it never saw in training
        (a held-out shape × colour × size triple) extrapolates. A kept family on its own (a colour)
        is a condition training showed with every value of the others, so it still says what the
        flat colour is without asking for the combination. Energies (inference) are unchanged.
        """
        sigma = float(sigma)
        if not (math.isfinite(sigma) and sigma >= 0.0):
            raise ModelError(f"{self.name}: prior_below must be a finite noise level >= 0, got {sigma!r}")
        keeps = tuple(keeps)
        families = [s.family for s in self.slots]
        unknown = [f for f in keeps if f not in families]
        if unknown or len(set(keeps)) != len(keeps):
            raise ModelError(f"{self.name}: prior_keeps must name distinct families of the model "
                             f"({', '.join(families)}), got {list(keeps)}")
        offsets = slot_offsets(self.slots)
        cols = [c for s in self.slots if s.family in keeps for c in range(offsets[s.family], offsets[s.family] + s.width)]
        self.prior_below = sigma
        self.prior_keeps = keeps
        self._kept_columns = torch.tensor(cols, dtype=torch.long)

    def set_autoguide(self, guide: torch.nn.Module, weight: float, interval: tuple[float, float] | None = None) -> None:
        """Sample with autoguidance instead of classifier-free guidance: ε' = ε_g + w·(ε − ε_g), both
        networks under the row's own condition (Karras et al. 2024, "Guiding a diffusion model with
        a bad version of itself"). ``guide`` is a smaller, shorter-trained network of the same
        conditions; where it errs and the model does not (blurred edges, mixed attributes), the
        difference points towards the data, without the pull to the condition's mode that the
        prior-contrasting direction of classifier-free guidance has. With ``interval`` only rows at
        lo ≤ σ ≤ hi are autoguided; the others keep the classifier-free guidance the model was given.
        Energies (inference) are unchanged.
        """
        if not (math.isfinite(weight) and weight > 0):
            raise ModelError(f"{self.name}: autoguide weight must be a finite number > 0, got {weight!r}")
        cfg = getattr(guide, "config", None)
        if cfg is None or cfg.slots != self.slots or (cfg.channels, cfg.image_size, cfg.image_size) != self.image_shape:
            raise ModelError(f"{self.name}: the autoguide network must take the model's conditions and image size")
        if interval is not None and not (0.0 <= float(interval[0]) < float(interval[1])):
            raise ModelError(f"{self.name}: autoguide interval must have 0 <= lo < hi, got {list(interval)}")
        self.guide = guide.eval()
        self.guide_weight = float(weight)
        self.guide_interval = None if interval is None else (float(interval[0]), float(interval[1]))

    @property
    def guidance_settings(self) -> GuidanceSettings:
        """How this model is guided (the same record a manifest entry gives, :class:`GuidanceSettings`)."""
        auto = self.guide is not None
        return GuidanceSettings(
            guidance=self.guidance,
            sampling_guidance=None if self.sampling_guidance == self.guidance else self.sampling_guidance,
            interval=self.guidance_interval, prior_below=self.prior_below, prior_keeps=self.prior_keeps,
            autoguide_weight=self.guide_weight if auto else None,
            autoguide_interval=self.guide_interval if auto else None,
            mirror_below=self.mirror_below, mirror_reflect=self.mirror_reflect, mirror_turns=self.mirror_turns,
        )

    @property
    def passes_per_row(self) -> int:
        """Network passes a sampled row costs at most: 2 with an autoguide (the guide's beside the
        model's), twice that with mirror averaging (the mirror image's pass)."""
        return (1 if self.guide is None else 2) * (1 if self.mirror_below is None else 2)

    def set_sigma_range(self, lo: float, hi: float, fallback: "ImplicitConceptModel") -> None:
        """Let this model speak only for lo ≤ σ ≤ hi; at other levels every condition scores as ``fallback``'s prior.

        A factor model trained where the other factors were fixed (a colour model whose data shows
        one shape) also carries those factors in its guided direction. Restricting it to the
        noise levels at which its own factor is decided (colour: low σ; outlines are settled above)
        keeps it from redrawing the others, as guidance limited to an interval of noise levels does
        for one model (Kynkäänniemi et al., 2024). Scores and energies follow the same rule.
        """
        if not (0.0 <= lo < hi):
            raise ModelError(f"{self.name}: sigma range must have 0 <= lo < hi, got [{lo}, {hi}]")
        if not isinstance(fallback, ImplicitConceptModel):
            raise ModelError(f"{self.name}: a sigma range needs an implicit prior model to fall back on, got {fallback!r}")
        if fallback.image_shape != self.image_shape:
            raise ModelError(f"{self.name}: the fallback prior {fallback.name} draws {fallback.image_shape} images, not {self.image_shape}")
        if not torch.equal(fallback.energy_sigmas, self.energy_sigmas) or fallback.energy_draws != self.energy_draws \
                or fallback.energy_seed != self.energy_seed:
            raise ModelError(f"{self.name}: the fallback prior {fallback.name} must use the same energy noise levels, draws and seed")
        self.sigma_range = (float(lo), float(hi))
        self.fallback = fallback

    def _out_of_range(self, sigma: torch.Tensor) -> torch.Tensor:
        """Bool mask (same shape as ``sigma``) of noise levels outside the model's sigma range."""
        lo, hi = self.sigma_range
        return (sigma < lo) | (sigma > hi)

    def _outside(self, sigma: torch.Tensor) -> torch.Tensor | None:
        """Bool mask of σ values outside the model's range, or None when every one is inside."""
        if self.sigma_range is None:
            return None
        out = self._out_of_range(sigma)
        return out if bool(out.any()) else None

    def _fallback_null(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(n, condition_width(self.fallback.slots), device=device, dtype=dtype)

    def raw_eps(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The network's noise prediction for exactly this condition: (N, C, H, W).

        The network runs in float32 as trained. On CUDA under ``torch.inference_mode`` (the
        samplers' loop), the switches :data:`CUDA_BF16` and :data:`CUDA_CHANNELS_LAST` (both off by
        default) run its body in bf16 autocast and on channels-last tensors; the EDM preconditioning
        around it (x − D(x))/σ stays in float32, so only the body's output carries bf16 rounding,
        scaled by c_out ≤ σ. Energies (no_grad, not inference mode) never use them."""
        self.forward_rows += x.shape[0]
        return _forward(self.net, x, sigma, cond)

    def eps(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Guided noise prediction ε' = ε_∅ + w·(ε_c − ε_∅): (N, C, H, W), (N, D), (N,) → (N, C, H, W),
        w the sampling weight (``sampling_guidance``, by default ``guidance``).

        With a guidance interval (:meth:`set_guidance_interval`), rows whose σ lies outside it get
        w = 1, the plain conditional ε_c; rows below ``prior_below`` (:meth:`set_prior_below`) get
        the model's prior ε_∅.

        With guidance w the concept's distribution is the sharpened conditional p(x)·p(c | x)^w
        (classifier-free guidance), i.e. E'_c = E_∅ + w·(E_c − E_∅); w = 1 is the plain conditional.
        The null condition (the prior) is unchanged, so the prior-corrected product of concepts,
        Σ E'_cᵢ − (k−1)·E_∅, is exactly composable-diffusion's ε_∅ + w·Σ(ε_cᵢ − ε_∅).
        """
        cond = cond.to(x.device, x.dtype)
        sigma = sigma.to(x.device, x.dtype)
        if self.mirror_below is None:
            return self._composed_eps(x, cond, sigma)
        turn = self.turn_index(cond, sigma)  # (N,) each row's orientation (set_mirror's turns)
        if not bool(turn.any()):
            return self._mirror_average(x, cond, sigma)
        out = torch.empty_like(x)
        for k in turn.unique().tolist():
            r = turn == k
            xr, cr = self.turned(x[r], cond[r], k)
            out[r] = self.unturned(self._mirror_average(xr, cr, sigma[r]), k)
        return out

    def _mirror_average(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The prediction, averaged with its mirror image's on the rows below ``mirror_below`` (set_mirror)."""
        out = self._composed_eps(x, cond, sigma)
        m = sigma < self.mirror_below  # (N,) rows averaged with their mirror image
        if not bool(m.any()):
            return out
        back = self._composed_eps(x[m].flip(-1), self.mirrored_condition(cond[m]), sigma[m]).flip(-1)
        out = out.clone()
        out[m] = 0.5 * (out[m] + back)
        return out

    def _composed_eps(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        outside = self._outside(sigma)
        if outside is None:
            return self._conditioned_eps(x, cond, sigma)
        # rows outside the model's noise levels: the fallback's prior (its null condition, unguided)
        return _by_rows(outside, x, cond, sigma, self._fallback_prior, self._conditioned_eps)

    def _conditioned_eps(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The guided prediction, or below ``prior_below`` the model's own prior (or kept conditions)."""
        if self.prior_below is None:
            return self._guided_eps(x, cond, sigma)
        return _by_rows(sigma < self.prior_below, x, cond, sigma, self._own_prior, self._guided_eps)

    def _own_prior(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Below ``prior_below``: the prior, or the plain conditional on the kept families alone."""
        kept = torch.zeros_like(cond)
        cols = self._kept_columns.to(cond.device)
        kept[:, cols] = cond[:, cols]
        return self.raw_eps(x, kept, sigma)

    def _fallback_prior(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.fallback.raw_eps(x, self._fallback_null(x.shape[0], x.device, x.dtype), sigma)

    def _guided_eps(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.guide is None:
            return self._classifier_free_eps(x, cond, sigma)
        auto = torch.ones_like(sigma, dtype=torch.bool)
        if self.guide_interval is not None:
            auto = (sigma >= self.guide_interval[0]) & (sigma <= self.guide_interval[1])
        return _by_rows(auto, x, cond, sigma, self._autoguided_rows, self._classifier_free_eps)

    def _autoguided_rows(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """ε_g + w·(ε − ε_g) for every row, the guide's pass counted as a network row."""
        eps = self.raw_eps(x, cond, sigma)
        self.forward_rows += x.shape[0]
        weak = _forward(self.guide, x, sigma, cond)
        return weak + self.guide_weight * (eps - weak)

    def _classifier_free_eps(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.sampling_guidance == 1.0 or bool((cond == 0).all()):
            return self.raw_eps(x, cond, sigma)
        if self.guidance_interval is None:
            return self._guided_rows(x, cond, sigma)
        lo, hi = self.guidance_interval
        guided = (sigma >= lo) & (sigma <= hi)  # (N,) the others are sampled without guidance (w = 1)
        return _by_rows(guided, x, cond, sigma, self._guided_rows, self.raw_eps)

    def _guided_rows(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """ε_∅ + w·(ε_c − ε_∅) for every row (null rows: ε_∅)."""
        null = (cond == 0).all(dim=1)  # (N,) rows that already are the prior
        # Rows that share an image (one chain evaluated under several leaves) share one prior
        # evaluation: group identical (image, σ) rows and run the null condition once per group.
        first, inv = _distinct_rows(torch.cat([x.flatten(1), sigma[:, None]], dim=1))  # (U,), (N,)
        cond_rows = torch.nonzero(~null).squeeze(1)  # (M,)
        xs = torch.cat([x[first], x[cond_rows]])  # (U + M, C, H, W)
        ss = torch.cat([sigma[first], sigma[cond_rows]])
        cs = torch.cat([torch.zeros_like(cond[first]), cond[cond_rows]])
        out = self.raw_eps(xs, cs, ss)
        eps_null = out[: first.shape[0]][inv]  # (N, C, H, W)
        result = eps_null.clone()
        result[cond_rows] = eps_null[cond_rows] + self.sampling_guidance * (out[first.shape[0]:] - eps_null[cond_rows])
        return result

    def denoise(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Estimate of the clean image E[x₀ | x, c]: (N, C, H, W)."""
        return self.net.denoise(x, sigma.to(x.device, x.dtype), cond.to(x.device, x.dtype))

    def score(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """∇ₓ log p_σ(x | c) = −ε'/σ (the guided prediction, see :meth:`eps`): (N, C, H, W)."""
        if sigma is None:
            raise ModelError(f"{self.name} is noise-conditional: its score needs a noise level sigma")
        self._check(x, cond, sigma)
        s = sigma.to(x.device, x.dtype)
        return -self.eps(x, cond, s) / s[:, None, None, None]

    def _noise(self, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        g = torch.Generator(device="cpu").manual_seed(self.energy_seed)
        return torch.randn(shape, generator=g).to(device, dtype)

    @torch.no_grad()
    def energy(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """Seeded denoising-loss energy: (N, C, H, W), (N, D), (N,)|None → (N,).

        ``sigma=None`` averages over the fixed σ grid (an ELBO estimate of −log p(x | c) + const);
        a given ``sigma`` uses that noise level only (times the same span, so scales agree).
        """
        return self._level_energies(x, cond, sigma).sum(1)

    @torch.no_grad()
    def energy_levels(self, x: torch.Tensor, cond: torch.Tensor, draws: int | None = None) -> torch.Tensor:
        """The σ-grid energy split by noise level: (N, C, H, W), (N, D) → (N, S), summing to :meth:`energy`.

        Concept inference reads the levels out with calibrated weights (a level's share of the
        ELBO is not its share of the evidence about a concept: a smile shows at high noise,
        glasses at low noise). ``draws``: noise draws per level (default ``energy_draws``); more
        draws give a lower-variance estimate of the same expectation, at proportional cost.
        """
        return self._level_energies(x, cond, None, draws)

    def _level_energies(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None,
                        draws_per_level: int | None = None) -> torch.Tensor:
        self._check(x, cond, sigma)
        per = self.energy_draws if draws_per_level is None else int(draws_per_level)
        if per < 1:
            raise ModelError(f"{self.name}: energy draws per noise level must be ≥ 1, got {draws_per_level!r}")
        n = x.shape[0]
        cond = cond.to(x.device, x.dtype)
        sig = self.energy_sigmas.to(x.device, x.dtype) if sigma is None else None
        levels = sig.shape[0] if sig is not None else 1
        draws = levels * per
        noise = self._noise((draws,) + tuple(x.shape[1:]), x.device, x.dtype)
        null = (cond == 0).all(dim=1)  # (N,) rows that are the prior already
        guided = self.guidance != 1.0 and not bool(null.all())
        if guided:
            # E'_c = E_∅ + w·(E_c − E_∅), as in eps(). The noise is shared by every row, so rows with
            # the same image (one image scored under many conditions) share one prior evaluation.
            key = x.flatten(1) if sigma is None else torch.cat([x.flatten(1), sigma.to(x)[:, None]], dim=1)
            first, inv = _distinct_rows(key)  # (U,), (N,)
            rows = torch.nonzero(~null).squeeze(1)  # (M,) rows with a condition
            idx = torch.cat([first, rows])
            cs = torch.cat([torch.zeros_like(cond[first]), cond[rows]])
        else:
            first = torch.zeros(0, dtype=torch.long, device=x.device)
            idx, cs = torch.arange(n, device=x.device), cond
        u = first.shape[0]
        total = torch.zeros(idx.shape[0], levels, device=x.device, dtype=x.dtype)  # (U + M, S) or (N, S)
        # Levels outside a sigma range are replaced by the fallback's below: not worth computing here.
        skip = self._outside(sig) if sig is not None else None
        for j in range(draws):
            if skip is not None and bool(skip[j // per]):
                continue
            s = sig[j // per].expand(n) if sig is not None else sigma.to(x.device, x.dtype)
            nz = noise[j].expand_as(x)
            xn = x + s[:, None, None, None] * nz
            total[:, j // per] += (self.raw_eps(xn[idx], cs, s[idx]) - nz[idx]).pow(2).flatten(1).sum(1)
        e = self.energy_span * total / draws
        if guided:
            e0 = e[:u][inv]  # (N, S)
            out = e0.clone()
            out[rows] = e0[rows] + self.guidance * (e[u:] - e0[rows])
            e = out
        return self._fallback_levels(x, sigma, e, per)

    def _fallback_levels(self, x: torch.Tensor, sigma: torch.Tensor | None, e: torch.Tensor, per: int) -> torch.Tensor:
        """Levels outside the sigma range take the fallback prior's energy (same noise draws): (N, S)."""
        if self.sigma_range is None:
            return e
        if sigma is None:
            out_cols = self._out_of_range(self.energy_sigmas.to(x.device, x.dtype))  # (S,)
            if not bool(out_cols.any()):
                return e
            fb = self.fallback._level_energies(x, self._fallback_null(x.shape[0], x.device, x.dtype), None, per)
            return torch.where(out_cols[None, :], fb, e)
        out_rows = self._out_of_range(sigma.to(x.device, x.dtype))  # (N,)
        if not bool(out_rows.any()):
            return e
        fb = self.fallback._level_energies(x, self._fallback_null(x.shape[0], x.device, x.dtype), sigma, per)
        return torch.where(out_rows[:, None], fb, e)

    def to(self, device: torch.device | str) -> "ImplicitConceptModel":
        self.net.to(device)
        return self


class ExplicitConceptModel(_Base):
    kind = "explicit"

    def __init__(self, net: EnergyNet, name: str, domain: str):
        cfg = net.config
        super().__init__(name, domain, cfg.slots, (cfg.channels, cfg.image_size, cfg.image_size))
        self.net = net.eval()
        self.noise_conditional = bool(cfg.noise_conditional)

    def energy(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        self._check(x, cond, sigma)
        if self.noise_conditional and sigma is None:
            raise ModelError(f"{self.name} is noise-conditional: its energy needs a noise level sigma")
        s = sigma.to(x.device, x.dtype) if (sigma is not None and self.noise_conditional) else None
        self.forward_rows += x.shape[0]
        return self.net(x, s, cond.to(x.device, x.dtype))

    def score(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """−∇ₓE by autograd (no graph is kept: the sampler does not backpropagate through it)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            e = self.energy(xg, cond, sigma)
            (grad,) = torch.autograd.grad(e.sum(), xg)
        return -grad

    def to(self, device: torch.device | str) -> "ExplicitConceptModel":
        self.net.to(device)
        return self
