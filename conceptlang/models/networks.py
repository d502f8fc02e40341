"""The networks behind concept models: a noise-predicting U-Net (implicit) and a scalar energy net (explicit).

Both take a *condition tensor* ``(N, D)`` built from per-family **slots** (see :class:`SlotSpec`), so
one joint network per domain gives E(x | one concept) for every concept and E(x | nothing) as the
domain prior: a family left empty is the "null" token, which training shows the network by dropping
each family independently (condition dropout).

Condition tensor layout, slot after slot in the order of ``slots``:

* discrete slot → 1 column: the token index as a float; 0 is null, ``1..K`` are ``values``.
* continuous slot → ``1 + P`` columns: a presence flag (0 = null) and the ``P`` parameters.

Configs are plain dataclasses, saved as JSON beside the weights they produced.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

NULL_TOKEN = 0


@dataclass(frozen=True)
class SlotSpec:
    """One condition slot of a joint model: a concept family and its vocabulary."""

    family: str
    kind: str  # "discrete" | "continuous"
    values: tuple[str, ...] = ()  # discrete tokens 1..K (0 is null)
    params: tuple[str, ...] = ()  # continuous parameter names
    ranges: tuple[tuple[float, float], ...] = ()

    @property
    def width(self) -> int:
        return 1 if self.kind == "discrete" else 1 + len(self.params)

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "kind": self.kind,
            "values": list(self.values),
            "params": list(self.params),
            "ranges": [list(r) for r in self.ranges],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SlotSpec":
        return cls(
            family=str(d["family"]),
            kind=str(d["kind"]),
            values=tuple(d.get("values", ())),
            params=tuple(d.get("params", ())),
            ranges=tuple(tuple(float(v) for v in r) for r in d.get("ranges", ())),
        )


def condition_width(slots: tuple[SlotSpec, ...]) -> int:
    return sum(s.width for s in slots)


def slot_offsets(slots: tuple[SlotSpec, ...]) -> dict[str, int]:
    """Each slot's family → the condition-tensor column its token or presence flag starts at."""
    out, col = {}, 0
    for s in slots:
        out[s.family] = col
        col += s.width
    return out


class _NetConfigJSON:
    """JSON round trip shared by the network configs (tuples ↔ lists, slots ↔ dicts)."""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("widths", "spatial", "blur"):
            if key in d:
                d[key] = list(d[key])
        d["slots"] = [s.to_json() for s in self.slots]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]):
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        for key in ("spatial", "blur"):
            if key in d:
                d[key] = tuple(d[key])
        d["slots"] = tuple(SlotSpec.from_json(s) for s in d.get("slots", ()))
        return cls(**d)


@dataclass
class UNetConfig(_NetConfigJSON):
    """A small noise-predicting U-Net (implicit energy). ``widths`` has one entry per resolution."""

    image_size: int = 32
    channels: int = 3
    widths: tuple[int, ...] = (32, 64, 128)
    blocks_per_level: int = 1
    emb_dim: int = 128
    groups: int = 8
    attention: bool = True  # self-attention at the lowest resolution
    sigma_data: float = 0.5  # EDM preconditioning: the data's standard deviation
    slots: tuple[SlotSpec, ...] = field(default_factory=tuple)
    # Continuous (x, y) families also given to the network as an image: a Gaussian bump of this
    # width (fraction of the canvas) centred on the condition, one input channel per family (zero
    # when the slot is null). A place is then a place in pixels, not a code the FiLM path must decode.
    spatial: tuple[str, ...] = ()
    spatial_width: float = 0.08
    # Residual blocks at full resolution after the decoder, each starting as the identity (zero
    # output conv): capacity where outlines are drawn, which a warm start from a network without
    # them can add without changing what that network computes (``fresh_parameter``).
    refine_blocks: int = 0


@dataclass
class PixelNetConfig(_NetConfigJSON):
    """A per-pixel denoiser (implicit energy) that cannot represent shape; ``widths``: one block each.

    Every layer acts on one pixel at a time (1×1 convolutions); with ``context`` each block also
    sees the mean of its features over the image (a DeepSets pooling), so the network can agree on
    one colour for all the object's pixels. Either way (without ``blur``) its output is equivariant
    under any permutation of the pixels: it models the image's multiset of colours, never their
    arrangement.
    A colour model built on it, trained on squares only, has no square to carry into compositions.

    ``blur`` (widths in pixels) adds the input blurred by isotropic Gaussians as extra channels:
    a pixel then knows whether it lies inside a bright region (an object, not the background)
    with the noise averaged out, but still not the outline's shape, since the kernel is round.
    The network is then equivariant under translations, flips and quarter turns, not under
    arbitrary permutations. ``blur_of="max"`` blurs the per-pixel maximum over the colour
    channels instead: one brightness map per width, which says where an object is but not
    which colour its neighbours have.

    ``spatial`` gives each named (x, y) family to every pixel as one more input channel, the
    round bump of :meth:`_EDMDenoiser.spatial_maps` at the condition's point: a pixel knows how
    far it lies from the point, not in which direction, so a position model built on it can say
    where an object goes but still not draw its outline.
    """

    image_size: int = 32
    channels: int = 3
    widths: tuple[int, ...] = (64, 64, 64)
    emb_dim: int = 128
    context: bool = True
    blur: tuple[float, ...] = ()
    blur_of: str = "rgb"  # what is blurred: the colour channels, or "max" (their per-pixel maximum: where, not which colour)
    sigma_data: float = 0.5
    slots: tuple[SlotSpec, ...] = field(default_factory=tuple)
    spatial: tuple[str, ...] = ()  # (x, y) families given as a round bump map per pixel, as in UNetConfig
    spatial_width: float = 0.08


@dataclass
class EnergyNetConfig(_NetConfigJSON):
    """A conv net with a scalar output E(x | c[, σ]) (explicit energy, as in the paper)."""

    image_size: int = 32
    channels: int = 3
    widths: tuple[int, ...] = (48, 96, 96, 128)
    emb_dim: int = 128
    noise_conditional: bool = True  # True for DSM (E(x, σ)/σ); False for contrastive divergence
    spectral_norm: bool = False
    slots: tuple[SlotSpec, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


class FourierFeatures(nn.Module):
    """Fixed sinusoidal features of a few scalars: (N, P) → (N, 2·P·F)."""

    def __init__(self, n_in: int, n_freq: int = 8, max_freq: float = 32.0):
        super().__init__()
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), n_freq)) * math.pi
        self.register_buffer("freqs", freqs, persistent=False)
        self.out_dim = 2 * n_in * n_freq

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        arg = v[:, :, None] * self.freqs  # (N, P, F)
        return torch.cat([arg.sin(), arg.cos()], dim=-1).flatten(1)


class ConditionEmbedding(nn.Module):
    """Sum of per-slot embeddings: label embeddings for discrete slots, an MLP for continuous ones."""

    def __init__(self, slots: tuple[SlotSpec, ...], dim: int):
        super().__init__()
        self.slots = slots
        self.tables = nn.ModuleDict()
        self.mlps = nn.ModuleDict()
        self.nulls = nn.ParameterDict()
        for s in slots:
            if s.kind == "discrete":
                self.tables[s.family] = nn.Embedding(len(s.values) + 1, dim)
            else:
                ff = FourierFeatures(len(s.params), n_freq=6, max_freq=16.0)
                self.mlps[s.family] = nn.Sequential(
                    ff, nn.Linear(ff.out_dim + len(s.params), dim), nn.SiLU(), nn.Linear(dim, dim)
                )
                self.nulls[s.family] = nn.Parameter(torch.zeros(dim))
        self.dim = dim

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """(N, D) → (N, dim)"""
        out = cond.new_zeros(cond.shape[0], self.dim)
        col = 0
        for s in self.slots:
            if s.kind == "discrete":
                idx = cond[:, col].round().long()  # (N,)
                out = out + self.tables[s.family](idx)
            else:
                flag = cond[:, col : col + 1]  # (N, 1): 1 present, 0 null
                p = cond[:, col + 1 : col + 1 + len(s.params)]  # (N, P)
                lo = torch.tensor([r[0] for r in s.ranges] or [0.0] * len(s.params), device=cond.device)
                hi = torch.tensor([r[1] for r in s.ranges] or [1.0] * len(s.params), device=cond.device)
                p = (p - lo) / (hi - lo)  # normalised to [0, 1]
                mlp = self.mlps[s.family]
                e = mlp[1:](torch.cat([mlp[0](p), p], dim=1))
                out = out + flag * e + (1.0 - flag) * self.nulls[s.family]
            col += s.width
        return out


class SigmaEmbedding(nn.Module):
    """Embeds log σ (EDM's c_noise = ln σ / 4) with Fourier features and an MLP: (N,) → (N, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.ff = FourierFeatures(1, n_freq=16, max_freq=64.0)
        self.mlp = nn.Sequential(nn.Linear(self.ff.out_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        c_noise = sigma.log()[:, None] / 4.0  # (N, 1)
        return self.mlp(self.ff(c_noise / 4.0))


# --------------------------------------------------------------------------------------------
# Implicit: a noise-predicting U-Net with FiLM conditioning
# --------------------------------------------------------------------------------------------


def _groups(channels: int, groups: int) -> int:
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


def _spatial_columns(
    slots: tuple[SlotSpec, ...], spatial: tuple[str, ...]
) -> list[tuple[int, tuple[tuple[float, float], tuple[float, float]]]]:
    """Condition-tensor column of each spatial family's presence flag, and its (x, y) ranges."""
    out = []
    offsets = slot_offsets(slots)
    by_family = {s.family: (offsets[s.family], s) for s in slots}
    for fam in spatial:
        if fam not in by_family:
            raise ValueError(f"spatial family {fam!r} is not a condition slot ({', '.join(by_family)})")
        col, s = by_family[fam]
        if s.kind != "continuous" or len(s.params) != 2:
            raise ValueError(f"spatial family {fam!r} must be continuous with two parameters (x, y)")
        out.append((col, (s.ranges[0], s.ranges[1])))
    return out


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, FiLM (scale, shift) from the embedding, GroupNorm → SiLU → conv."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in, groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out, groups), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (N, c_out, H, W)
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(c, groups), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.out = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)  # each (N, C, HW)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.out(a.transpose(1, 2).reshape(n, c, h, w))


class _EDMDenoiser(nn.Module):
    """Denoiser D(x, σ, c) with EDM preconditioning; the noise prediction is ε̂ = (x − D)/σ.

    EDM's scalings (Karras et al. 2022) keep the network's input and target at unit variance at
    every σ, which on a CPU budget trains noticeably faster than raw ε-prediction. This base holds
    the σ and condition embeddings and the spatial families' bump maps (``config.spatial``);
    subclasses provide ``raw(x_in, emb, maps)``.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.spatial_cols = _spatial_columns(config.slots, config.spatial)
        E = config.emb_dim
        self.sigma_emb = SigmaEmbedding(E)
        self.cond_emb = ConditionEmbedding(config.slots, E)
        self.emb_out = nn.Sequential(nn.SiLU(), nn.Linear(E, E))

    def embed(self, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.emb_out(self.sigma_emb(sigma) + self.cond_emb(cond))  # (N, E)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) noisy images, (N,) σ, (N, D) → (N, C, H, W) estimate of the clean image."""
        sd = self.config.sigma_data
        s = sigma.to(x.dtype)[:, None, None, None]
        c_in = 1.0 / (s**2 + sd**2).sqrt()
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        cond = cond.to(x.dtype)
        maps = self.spatial_maps(cond, x.shape[-1]) if self.spatial_cols else None
        return c_skip * x + c_out * self.raw(c_in * x, self.embed(sigma.to(x.dtype), cond), maps)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Noise prediction ε̂(x, σ, c) = (x − D(x, σ, c)) / σ: (N, C, H, W)."""
        return (x - self.denoise(x, sigma, cond)) / sigma.to(x.dtype)[:, None, None, None]

    def spatial_maps(self, cond: torch.Tensor, size: int) -> torch.Tensor:
        """(N, D) conditions → (N, S, size, size): one Gaussian bump per spatial family (0 if null)."""
        grid = (torch.arange(size, device=cond.device, dtype=cond.dtype) + 0.5) / size  # pixel centres
        w2 = 2.0 * self.config.spatial_width**2
        maps = []
        for col, (xr, yr) in self.spatial_cols:
            flag = cond[:, col, None, None]
            px = ((cond[:, col + 1] - xr[0]) / (xr[1] - xr[0]))[:, None, None]
            py = ((cond[:, col + 2] - yr[0]) / (yr[1] - yr[0]))[:, None, None]
            maps.append(flag * torch.exp(-((grid[None, None, :] - px) ** 2 + (grid[None, :, None] - py) ** 2) / w2))
        return torch.stack(maps, dim=1)


class UNet(_EDMDenoiser):
    """The noise-predicting U-Net with FiLM conditioning (EDM preconditioning: ``_EDMDenoiser``)."""

    def __init__(self, config: UNetConfig):
        super().__init__(config)
        cfg = config
        E = cfg.emb_dim
        self.conv_in = nn.Conv2d(cfg.channels + len(self.spatial_cols), cfg.widths[0], 3, padding=1)

        # CPU cost is dominated by full-resolution convs, so the top level has one block down and one
        # up, resampling convs run at the low resolution, and width grows as resolution shrinks.
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_channels: list[int] = []
        c = cfg.widths[0]
        for i, w in enumerate(cfg.widths):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks_per_level):
                blocks.append(ResBlock(c, w, E, cfg.groups))
                c = w
                skip_channels.append(c)
            self.down.append(blocks)
            if i < len(cfg.widths) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid1 = ResBlock(c, c, E, cfg.groups)
        self.mid_attn = SelfAttention(c, cfg.groups) if cfg.attention else nn.Identity()
        self.mid2 = ResBlock(c, c, E, cfg.groups)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(cfg.widths))):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks_per_level):
                blocks.append(ResBlock(c + skip_channels.pop(), w, E, cfg.groups))
                c = w
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(nn.Conv2d(c, cfg.widths[i - 1], 3, padding=1))
                c = cfg.widths[i - 1]
        self.refine = nn.ModuleList(ResBlock(c, c, E, cfg.groups) for _ in range(cfg.refine_blocks))
        self.norm_out = nn.GroupNorm(_groups(c, cfg.groups), c)
        self.conv_out = nn.Conv2d(c, cfg.channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def raw(self, x_in: torch.Tensor, emb: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        if maps is not None:
            x_in = torch.cat([x_in, maps.to(x_in.dtype)], dim=1)
        h = self.conv_in(x_in)  # (N, w0, H, W)
        skips = []
        for i, blocks in enumerate(self.down):
            for b in blocks:
                h = b(h, emb)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for j, blocks in enumerate(self.up):
            for b in blocks:
                h = b(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.upsample):
                h = F.interpolate(self.upsample[j](h), scale_factor=2.0, mode="nearest")
        for b in self.refine:
            h = b(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))

    @staticmethod
    def fresh_parameter(name: str) -> bool:
        """Whether a warm start may leave this tensor at its initialisation when the source lacks it:
        the refine blocks', which start as the identity."""
        return name.startswith("refine.")


# --------------------------------------------------------------------------------------------
# Implicit, shape-blind: a per-pixel denoiser
# --------------------------------------------------------------------------------------------


def gaussian_blur(x: torch.Tensor, width: float) -> torch.Tensor:
    """Isotropic Gaussian blur of (N, C, H, W) with std ``width`` pixels, reflecting at the borders."""
    r = max(1, math.ceil(3.0 * width))
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2.0 * width**2))
    k = k / k.sum()
    c = x.shape[1]
    h = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(h, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _pixel_norm(h: torch.Tensor) -> torch.Tensor:
    """RMS-normalise each pixel's feature vector (over channels only: nothing mixes pixels)."""
    return h * torch.rsqrt(h.pow(2).mean(dim=1, keepdim=True) + 1e-6)


class PixelBlock(nn.Module):
    """Per-pixel residual block: norm → SiLU → 1×1 conv, FiLM, [+ pooled context], SiLU → 1×1 conv."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, context: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.context = nn.Linear(c_in, c_out) if context else None
        self.conv2 = nn.Conv2d(c_out, c_out, 1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        a = F.silu(_pixel_norm(x))
        h = self.conv1(a)  # (N, c_out, H, W)
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = _pixel_norm(h) * (1.0 + scale) + shift
        if self.context is not None:
            h = h + self.context(a.mean(dim=(2, 3)))[:, :, None, None]  # the same for every pixel
        return self.skip(x) + self.conv2(F.silu(h))


class PixelNet(_EDMDenoiser):
    """Per-pixel denoiser D(x, σ, c) (see :class:`PixelNetConfig`): equivariant under any permutation
    of the pixels; with ``blur`` channels, under translations, flips and quarter turns."""

    def __init__(self, config: PixelNetConfig):
        super().__init__(config)
        cfg = config
        E = cfg.emb_dim
        if not cfg.widths:
            raise ValueError("a PixelNet needs at least one block width")
        if any(not (0.0 < b <= cfg.image_size / 6) for b in cfg.blur):
            raise ValueError(f"blur widths must be in (0, image_size/6], got {list(cfg.blur)}")
        if cfg.blur_of not in ("rgb", "max"):
            raise ValueError(f"blur_of must be 'rgb' or 'max', got {cfg.blur_of!r}")
        per_blur = cfg.channels if cfg.blur_of == "rgb" else 1
        self.conv_in = nn.Conv2d(cfg.channels + per_blur * len(cfg.blur) + len(self.spatial_cols), cfg.widths[0], 1)
        blocks = []
        c = cfg.widths[0]
        for w in cfg.widths:
            blocks.append(PixelBlock(c, w, E, cfg.context))
            c = w
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(c, cfg.channels, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def raw(self, x_in: torch.Tensor, emb: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.blur:
            src = x_in if self.config.blur_of == "rgb" else x_in.amax(dim=1, keepdim=True)
            x_in = torch.cat([x_in] + [gaussian_blur(src, b) for b in self.config.blur], dim=1)
        if maps is not None:
            x_in = torch.cat([x_in, maps.to(x_in.dtype)], dim=1)
        h = self.conv_in(x_in)
        for b in self.blocks:
            h = b(h, emb)
        return self.conv_out(F.silu(_pixel_norm(h)))


# --------------------------------------------------------------------------------------------
# Explicit: a scalar energy
# --------------------------------------------------------------------------------------------


class _FiLMConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, stride: int, sn: bool):
        super().__init__()
        conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.conv = nn.utils.parametrizations.spectral_norm(conv) if sn else conv
        self.film = nn.Linear(emb_dim, 2 * c_out)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        return F.silu(h * (1.0 + scale) + shift)


class EnergyNet(nn.Module):
    """E(x | c[, σ]): strided FiLM convs (smooth SiLU, so ∇ₓE is well behaved) → sum-pool → scalar.

    Noise-conditional nets return f(x, σ, c)/σ, so the DSM target σ·∇ₓE stays O(1) at every σ.
    """

    def __init__(self, config: EnergyNetConfig):
        super().__init__()
        self.config = config
        cfg = config
        E = cfg.emb_dim
        self.cond_emb = ConditionEmbedding(cfg.slots, E)
        self.sigma_emb = SigmaEmbedding(E) if cfg.noise_conditional else None
        self.emb_out = nn.Sequential(nn.SiLU(), nn.Linear(E, E))
        layers = []
        c = cfg.channels
        for i, w in enumerate(cfg.widths):
            layers.append(_FiLMConv(c, w, E, stride=1 if i == 0 else 2, sn=cfg.spectral_norm))
            c = w
        self.layers = nn.ModuleList(layers)
        head = nn.Linear(c, 1)
        self.head = nn.utils.parametrizations.spectral_norm(head) if cfg.spectral_norm else head

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None, cond: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W), (N,)|None, (N, D) → (N,) energies."""
        e = self.cond_emb(cond)
        if self.sigma_emb is not None:
            if sigma is None:
                raise ValueError("a noise-conditional energy needs sigma")
            e = e + self.sigma_emb(sigma.to(x.dtype))
        emb = self.emb_out(e)
        h = x
        for layer in self.layers:
            h = layer(h, emb)
        out = self.head(h.mean(dim=(2, 3))).squeeze(1)  # (N,)
        if self.sigma_emb is not None:
            out = out / sigma.to(x.dtype)
        return out


# Manifest architecture name → (network class, config class); registry.ARCHITECTURES spells the
# same names without importing this module (a test keeps the two equal).
NETWORKS: dict[str, tuple[type[nn.Module], type]] = {
    "UNet": (UNet, UNetConfig),
    "PixelNet": (PixelNet, PixelNetConfig),
    "EnergyNet": (EnergyNet, EnergyNetConfig),
}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
