"""Training concept models: plain denoising (implicit), DSM and contrastive divergence (explicit).

Everything random in a run comes from one seeded ``torch.Generator`` (noise, σ, condition dropout,
Langevin noise) and from the data stream, which is a pure function of the iteration number
(chunk ``c`` of the stream is ``generate(..., seed=f(data_seed, c))``; a labelled folder is read
in one seeded permutation per epoch, :class:`FolderStream`). A checkpoint holds the model, the EMA
copy, the optimizer, the generator state and the iteration, so a resumed run continues
bit-identically to an uninterrupted one on the same device and thread count.

Under ``torchrun`` (``torch.distributed`` initialised, :func:`init_distributed`) the network is
wrapped in DistributedDataParallel and each rank trains on its own contiguous slice of every
global batch (``batch_size`` is the global batch). Every rank draws the random numbers of the
*whole* batch from the same generator and keeps its slice, so a W-process run computes the same
per-image losses as a one-process run; DDP averages the ranks' gradients, which is the gradient of
the global mean. Rank 0 alone writes checkpoints, the log and the run's model manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from conceptlang.data.stream import chunk_arrays
from conceptlang.errors import ModelError
from conceptlang.io import atomic_path, write_json
from conceptlang.models.conditions import slots_for_domain, training_conditions
from conceptlang.models.networks import NETWORKS, EnergyNet, EnergyNetConfig, UNet

CHECKPOINT_FORMAT = 1


def state_digest(obj: Any) -> str:
    """sha256 over a checkpoint's contents: every tensor's dtype, shape and bytes and every other
    value's repr, walked in a fixed order (dict keys sorted). Independent of how torch.save lays
    the file out, so a state loaded back has the digest it had when saved."""
    h = hashlib.sha256()

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, dict):
            h.update(f"D{len(o)}".encode())
            for k in sorted(o, key=repr):
                h.update(repr(k).encode())
                walk(o[k])
        elif isinstance(o, (list, tuple)):
            h.update(f"{'L' if isinstance(o, list) else 'U'}{len(o)}".encode())
            for v in o:
                walk(v)
        else:
            h.update(f"V{type(o).__name__}:{o!r};".encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint atomically, with ``sha256`` = :func:`state_digest` of the rest."""
    with atomic_path(path) as tmp:
        torch.save({**state, "sha256": state_digest(state)}, tmp)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint and verify its ``sha256`` (ModelError when the file is unreadable or its
    contents changed, e.g. a flipped byte); one written before checksums were stored has none
    and loads unverified."""
    try:
        st = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # corrupt or foreign file
        raise ModelError(f"cannot read checkpoint {path}: {err}") from None
    if not isinstance(st, dict):
        raise ModelError(f"{path} is not a checkpoint (a {type(st).__name__}, not a dict)")
    stored = st.pop("sha256", None)
    if stored is not None and stored != state_digest(st):
        raise ModelError(f"checkpoint {path} fails its checksum: its contents changed after it was written "
                         "(a corrupt or edited file); resume from another checkpoint or start again")
    return st


METHODS = {"denoise": "implicit", "dsm": "explicit", "cd": "explicit"}
# implicit (denoising) networks by their `train --arch` name: the U-Net, or the shape-blind per-pixel
# net (networks.PixelNetConfig); values are networks.NETWORKS keys
ARCHES = {"unet": "UNet", "pixel": "PixelNet"}
LR_SCHEDULES = ("constant", "cosine")
# The sampler settings a run folder's manifest starts with: annealed Langevin, 39 noise levels from 10
# to 0.01 (the joint models' settings before the fast default). The fast default (dpmpp_2m, 13 steps,
# max_nfe 40) is tuned to the shipped joint models and lost accuracy on both other sets it was tried on
# (objects 0.97 -> 0.72, continual 0.77 -> 0.00; docs/compiler.md), while annealed Langevin samples all three
# sets well (each with its own schedule), so a new model starts with it; tune them in RUN/manifest.json
# (measure the fast default there), later checkpoints keep them.
RUN_SAMPLER: dict[str, Any] = {"sampler": "annealed", "sigma_max": 10.0, "sigma_min": 0.01, "n_sigmas": 39,
                               "steps_per_sigma": 2, "step_size": 3.06e-05, "noise_scale": 0.7071,
                               "final_denoise": True, "clamp": False, "alpha": 0.5, "and_mode": "joint"}


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved as ``config.json`` in the run folder)."""

    name: str
    domain: str
    families: tuple[str, ...] = ()  # () → every family of the domain
    method: str = "denoise"  # denoise (implicit) | dsm | cd (explicit)
    splits: dict[str, float] = field(default_factory=lambda: {"train": 1.0})
    iters: int = 10000
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (from lr down to lr_min at iteration ``iters``)
    lr_min: float = 0.0
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999  # upper bound of the EMA decay
    ema_rel: float = 0.1  # EMA window ≈ this fraction of the iterations so far (short runs: recent weights)
    cond_dropout: float = 0.3
    cutout: float = 0.0  # share of training images given one random background-coloured rectangle (see ``cutout``)
    cutout_form: str = "rect"  # rect (axis-aligned) | rotated (a random angle) | multi (1-3 rectangles); see ``cutout``
    p_null: float = 0.15  # share of batches' images trained unconditionally (the prior)
    p_single: float = 0.45  # share with exactly one family kept (the compiler's leaves)
    seed: int = 0
    data_seed: int = 0
    chunk_size: int = 2048
    checkpoint_every: int = 500
    log_every: int = 50
    # noise levels: lognormal(p_mean, p_std) (EDM) for denoise/dsm
    p_mean: float = -1.2
    p_std: float = 1.2
    # a share of the images instead draws σ from lognormal(low_mean, low_std): a fine-tune that
    # visits the last noise levels of a solve (σ ≲ 0.05) more often than the EDM lognormal does
    low_share: float = 0.0
    low_mean: float = -3.7
    low_std: float = 0.5
    # denoise only: images drawn at σ < haze_below get a faint smooth colour cast (a per-channel
    # offset plus a 4×4 field, bilinear, of rms up to ``haze`` grey levels of 255) added to the
    # noisy input, the target unchanged, so that the last steps of a solve remove such a cast
    haze: float = 0.0
    haze_below: float = 0.2
    # contrastive divergence (the paper's recipe, with its stabilisers)
    cd_steps: int = 30
    cd_step_size: float = 10.0
    cd_noise: float = 0.005
    cd_buffer: int = 10000
    cd_reuse: float = 0.95
    cd_reg: float = 1.0
    net: dict[str, Any] = field(default_factory=dict)  # UNetConfig / PixelNetConfig / EnergyNetConfig overrides
    arch: str = "unet"  # implicit models: a key of ARCHES
    init_from: str = ""  # warm start: a run folder or checkpoint.pt whose weights start this run
    image_size: int = 0  # training image side; 0: the domain's (a labelled folder: its own, CelebA 64)
    # a labelled image folder instead of a procedural domain (conceptlang.data.labelled): its path,
    # how it was opened (CelebA attributes, hair family, split) and the domain read from it
    data: str = ""
    data_options: dict[str, Any] = field(default_factory=dict)
    data_domain: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["families"] = list(self.families)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["families"] = tuple(d.get("families", ()))
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"training config has unknown settings: {', '.join(unknown)}")
        return cls(**d)

    @property
    def kind(self) -> str:
        return METHODS[self.method]


def validate_config(cfg: TrainConfig) -> None:
    if cfg.method not in METHODS:
        raise ModelError(f"unknown training method {cfg.method!r} (methods: {', '.join(METHODS)})")
    if cfg.iters < 0 or cfg.batch_size < 1 or cfg.chunk_size % cfg.batch_size:
        raise ModelError(f"bad sizes: iters={cfg.iters}, batch_size={cfg.batch_size}, "
                         f"chunk_size={cfg.chunk_size} (must be a multiple of the batch)")
    if cfg.arch not in ARCHES:
        raise ModelError(f"unknown architecture {cfg.arch!r} (architectures: {', '.join(ARCHES)})")
    if cfg.arch != "unet" and cfg.kind != "implicit":
        raise ModelError(f"architecture {cfg.arch!r} is a denoiser: it trains with method 'denoise', not {cfg.method!r}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ModelError(f"unknown lr_schedule {cfg.lr_schedule!r} (schedules: {', '.join(LR_SCHEDULES)})")
    if not 0.0 <= cfg.lr_min <= cfg.lr:
        raise ModelError(f"lr_min must be in [0, lr={cfg.lr}], got {cfg.lr_min}")
    if not cfg.splits or any(w <= 0 for w in cfg.splits.values()):
        raise ModelError(f"splits must map split names to positive weights, got {cfg.splits}")
    if not 0.0 <= cfg.cond_dropout < 1.0:
        raise ModelError(f"cond_dropout must be in [0, 1), got {cfg.cond_dropout}")
    if not 0.0 <= cfg.cutout <= 1.0:
        raise ModelError(f"cutout must be in [0, 1], got {cfg.cutout}")
    if not 0.0 <= cfg.low_share <= 1.0:
        raise ModelError(f"low_share must be in [0, 1], got {cfg.low_share}")
    if not (cfg.haze >= 0 and cfg.haze_below > 0):
        raise ModelError(f"haze must be >= 0 and haze_below > 0, got {cfg.haze} and {cfg.haze_below}")
    if cfg.haze > 0 and cfg.method != "denoise":
        raise ModelError(f"haze is a setting of method 'denoise', not {cfg.method!r}")
    if cfg.p_std <= 0 or cfg.low_std <= 0:
        raise ModelError(f"p_std and low_std must be > 0, got {cfg.p_std} and {cfg.low_std}")
    if cfg.cutout_form not in CUTOUT_FORMS:
        raise ModelError(f"unknown cutout_form {cfg.cutout_form!r} (forms: {', '.join(CUTOUT_FORMS)})")
    if cfg.image_size and cfg.image_size not in UNET_WIDTHS:
        raise ModelError(f"image_size must be one of {', '.join(map(str, UNET_WIDTHS))}, got {cfg.image_size}")
    if cfg.data and not cfg.data_domain:
        raise ModelError(f"a run on the data folder {cfg.data} needs its domain (TrainConfig.data_domain)")


# U-Net channel widths per image side: one level per halving down to 8×8 (self-attention there)
UNET_WIDTHS: dict[int, tuple[int, ...]] = {32: (32, 64, 96), 64: (32, 64, 96, 128), 128: (32, 64, 96, 128, 128)}


def domain_of(cfg: TrainConfig):
    """The run's :class:`~conceptlang.data.domain.Domain` at its training image size: a procedural
    domain by name, or the one read from a labelled folder (``cfg.data_domain``)."""
    from conceptlang.data import get_domain
    from conceptlang.data.domain import Domain, Family

    if cfg.data_domain:
        d = cfg.data_domain
        fams = tuple(Family(f["name"], f["kind"], values=tuple(f.get("values", ())), params=tuple(f.get("params", ())),
                            ranges=tuple(tuple(r) for r in f.get("ranges", ())), exclusive=bool(f.get("exclusive", True)),
                            description=f.get("description", "")) for f in d["families"])
        dom = Domain(d["name"], int(d["image_size"]), int(d.get("channels", 3)), fams, d.get("description", ""))
    else:
        dom = get_domain(cfg.domain)
    if cfg.image_size and cfg.image_size != dom.image_size:
        from dataclasses import replace

        dom = replace(dom, image_size=cfg.image_size)
    return dom


def learning_rate(cfg: TrainConfig, it: int) -> float:
    """The learning rate of iteration ``it`` (0-based): linear warm-up times the schedule.

    ``cosine`` falls from ``lr`` at iteration 0 to ``lr_min`` at iteration ``iters`` (and stays
    there); it depends on the iteration only, so a resumed run follows the same schedule.
    """
    warm = min(1.0, (it + 1) / max(cfg.warmup, 1))
    if cfg.lr_schedule == "constant" or cfg.iters <= 0:
        return cfg.lr * warm
    t = min(it, cfg.iters) / cfg.iters
    return warm * (cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1.0 + math.cos(math.pi * t)))


def build_network(cfg: TrainConfig) -> torch.nn.Module:
    domain = domain_of(cfg)
    slots = slots_for_domain(domain, cfg.families or None)
    base = {"image_size": domain.image_size, "channels": domain.channels, "slots": slots}
    over = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.net.items()}
    if cfg.kind == "implicit":
        net_class, config_class = NETWORKS[ARCHES[cfg.arch]]
        return net_class(config_class(**{**base, **over}))
    over.setdefault("noise_conditional", cfg.method == "dsm")
    over.setdefault("spectral_norm", cfg.method == "cd")
    return EnergyNet(EnergyNetConfig(**{**base, **over}))


# --------------------------------------------------------------------------------------------
# The data stream
# --------------------------------------------------------------------------------------------


class DataStream:
    """Batch ``i`` of an endless, deterministic stream of labelled images (a mixture of splits).

    Label arrays are padded to two objects per image (a one-object image repeats its object), so
    one-object and two-object splits mix in one batch. With ``workers > 0`` the next chunks are
    built ahead in that many worker processes (for a GPU, where drawing the images on one core
    would leave it waiting); the batches are the same either way.
    """

    def __init__(self, cfg: TrainConfig, workers: int = 0, shard: tuple[int, int] | None = None):
        if workers < 0:
            raise ModelError(f"data workers must be >= 0, got {workers}")
        self.cfg = cfg
        self.workers = int(workers)
        self.shard = slice(*(shard or (0, cfg.batch_size)))  # the images of each batch this process trains on
        self._pool = None
        self._ahead: dict[int, Any] = {}  # chunk id -> Future of chunk_arrays
        self._chunk_id = -1
        self._chunk: tuple[torch.Tensor, dict[str, np.ndarray], np.ndarray] | None = None
        total = sum(cfg.splits.values())
        counts = [int(round(cfg.chunk_size * w / total)) for w in cfg.splits.values()]
        counts[0] += cfg.chunk_size - sum(counts)
        self.parts = list(zip(cfg.splits, counts))

    def _arrays(self, c: int):
        args = (self.cfg.domain, self.parts, self.cfg.data_seed)
        size = self.cfg.image_size or None
        if not self.workers:
            return chunk_arrays(*args, c, image_size=size)
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the workers never inherit the parent's torch (or CUDA) state
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        window = range(c, c + 2 * self.workers)
        for old in [k for k in self._ahead if k not in window]:  # passed, or far ahead after a jump back
            self._ahead.pop(old).cancel()
        for k in window:
            if k not in self._ahead:
                self._ahead[k] = self._pool.submit(chunk_arrays, *args, k, image_size=size)
        return self._ahead.pop(c).result()

    def _make_chunk(self, c: int) -> None:
        from conceptlang.data import to_tensor

        images, idx, pos = self._arrays(c)
        self._chunk = (to_tensor(images), idx, pos)
        self._chunk_id = c

    def close(self) -> None:
        """Stop the worker processes (if any); the stream can be used again afterwards."""
        if self._pool is not None:
            for fut in self._ahead.values():
                fut.cancel()
            self._ahead.clear()
            self._pool.shutdown(wait=True)
            self._pool = None

    def batch(self, i: int) -> tuple[torch.Tensor, dict[str, np.ndarray], np.ndarray]:
        """Batch ``i``: this process's images (its shard) and the labels of the whole batch."""
        per = self.cfg.chunk_size // self.cfg.batch_size
        c, b = divmod(i, per)
        if c != self._chunk_id:
            self._make_chunk(c)
        x, idx, pos = self._chunk  # type: ignore[misc]
        sl = slice(b * self.cfg.batch_size, (b + 1) * self.cfg.batch_size)
        return x[sl][self.shard], {f: v[sl] for f, v in idx.items()}, pos[sl]


class _EpochOrder:
    """Global batch ``i`` of a labelled folder as image numbers: sample ``k = i·B + j`` is entry
    ``k mod N`` of epoch ``k div N``'s permutation, drawn from (data seed, epoch). A pure function
    of the iteration, so a resumed run and every rank see the same order."""

    def __init__(self, n: int, batch_size: int, data_seed: int):
        self.n, self.batch_size, self.data_seed = n, batch_size, data_seed
        self._epoch, self._perm = -1, np.arange(0)

    def _permutation(self, e: int) -> np.ndarray:
        if e != self._epoch:
            self._epoch, self._perm = e, np.random.default_rng([self.data_seed, e, 7]).permutation(self.n)
        return self._perm

    def __call__(self, i: int) -> np.ndarray:
        k = np.arange(i * self.batch_size, (i + 1) * self.batch_size, dtype=np.int64)
        out = np.empty_like(k)
        for e in np.unique(k // self.n):
            m = (k // self.n) == e
            out[m] = self._permutation(int(e))[k[m] % self.n]
        return out


class _ShardBatches(torch.utils.data.Sampler):
    """The DataLoader's batch sampler: this process's slice of global batches ``start`` … ``stop − 1``."""

    def __init__(self, order: _EpochOrder, start: int, stop: int, shard: slice):
        self.order, self.start, self.stop, self.shard = order, start, stop, shard

    def __iter__(self):
        for i in range(self.start, self.stop):
            yield self.order(i)[self.shard].tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class _FolderImages(torch.utils.data.Dataset):
    """Images of a labelled folder by number, decoded on demand (in DataLoader workers)."""

    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> np.ndarray | str:
        from conceptlang.errors import DataError

        try:
            return self.data.image(int(i))
        except DataError as err:  # passed back as text: a worker's exception would carry its traceback
            return str(err)


def _stack_images(items: list) -> np.ndarray | str:
    bad = [x for x in items if isinstance(x, str)]
    return bad[0] if bad else np.stack(items)


class FolderStream:
    """Batch ``i`` of a labelled image folder (:mod:`conceptlang.data.labelled`), streamed from disk.

    The labels of the whole folder are in memory; the images are read, centre-cropped and resized
    by ``workers`` DataLoader processes (0: in this process), a few batches ahead of the loop.
    The order is :class:`_EpochOrder`'s, so the batches are the same whatever the worker count,
    and a run resumed at iteration ``i`` reads on from there. Like :class:`DataStream` it returns
    this process's shard of the images and the labels of the whole batch.
    """

    def __init__(self, cfg: TrainConfig, data, workers: int = 2, shard: tuple[int, int] | None = None, until: int | None = None):
        if workers < 0:
            raise ModelError(f"data workers must be >= 0, got {workers}")
        self.cfg, self.data, self.workers = cfg, data, int(workers)
        self.shard = slice(*(shard or (0, cfg.batch_size)))
        self.order = _EpochOrder(len(data), cfg.batch_size, cfg.data_seed)
        self.until = until
        self._iter = None
        self._next = -1

    def _loader(self, start: int):
        stop = max(start + 1, self.until if self.until is not None else self.cfg.iters)
        return iter(torch.utils.data.DataLoader(
            _FolderImages(self.data), batch_sampler=_ShardBatches(self.order, start, stop, self.shard),
            num_workers=self.workers, collate_fn=_stack_images, prefetch_factor=4 if self.workers else None,
            persistent_workers=False))

    def batch(self, i: int) -> tuple[torch.Tensor, dict[str, np.ndarray], np.ndarray]:
        from conceptlang.data import to_tensor

        if self._iter is None or i != self._next:
            self.close()
            self._iter = self._loader(i)
        try:
            images = next(self._iter)
        except StopIteration:  # past the planned end (a longer run than asked): read on from here
            self._iter = self._loader(i)
            images = next(self._iter)
        if isinstance(images, str):
            from conceptlang.errors import DataError

            raise DataError(images)
        self._next = i + 1
        rows = self.order(i)
        return to_tensor(images), {f: v[rows] for f, v in self.data.index.items()}, self.data.positions[rows]

    def close(self) -> None:
        """Stop the worker processes (if any); the stream can be used again afterwards."""
        self._iter = None
        self._next = -1


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


CUTOUT_FORMS = ("rect", "rotated", "multi")
MULTI_CUTOUTS = 3  # at most this many rectangles per image for cutout form "multi"


def rotated_rect_mask(h: int, w: int, cx: torch.Tensor, cy: torch.Tensor, rw: torch.Tensor, rh: torch.Tensor,
                      theta: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: pixels whose centre lies inside an rw × rh rectangle centred at (cx, cy) (pixel
    units, from the top-left corner of the image) and turned by ``theta`` radians; all arguments (N,)."""
    dx = (torch.arange(w)[None, None, :] + 0.5) - cx[:, None, None]  # (N, 1, W) offsets of pixel centres
    dy = (torch.arange(h)[None, :, None] + 0.5) - cy[:, None, None]  # (N, H, 1)
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    return ((c * dx + s * dy).abs() < rw[:, None, None] / 2.0) & ((-s * dx + c * dy).abs() < rh[:, None, None] / 2.0)


def cutout(x: torch.Tensor, p: float, g: torch.Generator, lo: float = 0.2, hi: float = 0.5, form: str = "rect") -> torch.Tensor:
    """Paint one rectangle per image (with probability ``p``) in the image's background.

    Sides are uniform in [lo, hi] of the image side, the place uniform; the paint is the image's
    top-left pixel (the scenes background). ``form="rect"`` keeps the rectangle axis-aligned;
    ``"rotated"`` turns it by a uniform angle about its centre, so that it also cuts slanted edges
    (a square with a corner cut off by a slanted edge is no longer a square with square corners);
    ``"multi"`` paints 1 to ``MULTI_CUTOUTS`` axis-aligned ones (see ``_multi_mask``).
    A model trained on such images cannot rely on the whole outline of what it sees: a colour
    model whose data set shows only squares otherwise learns "red" as "a red square" and squares
    every shape it is composed with. Draws a fixed number of values from
    ``g`` whatever ``p`` is (five per image, one more for ``rotated``, ``2 + 4·MULTI_CUTOUTS`` for
    ``multi``): (N, C, H, W) → a new tensor.
    """
    if form not in CUTOUT_FORMS:
        raise ModelError(f"unknown cutout form {form!r} (forms: {', '.join(CUTOUT_FORMS)})")
    n, _, h, w = x.shape
    if form == "multi":
        use, inside = _multi_mask(n, h, w, g, lo, hi)
    else:
        u = torch.rand(n, 5, generator=g)  # use?, width, height, x0, y0
        use = u[:, 0]
        rw, rh, x0, y0 = _place_rect(u[:, 1:5], h, w, lo, hi)
        # (N,) angles; at 0 the mask is exactly the pixels x0 <= col < x0 + rw, y0 <= row < y0 + rh
        theta = torch.zeros(n) if form == "rect" else torch.rand(n, generator=g) * math.pi  # turned by π: the same one
        inside = rotated_rect_mask(h, w, x0 + rw / 2.0, y0 + rh / 2.0, rw, rh, theta)  # (N, H, W)
    inside &= (use < p)[:, None, None]
    inside = inside[:, None].to(x.device)
    return torch.where(inside, x[:, :, :1, :1].expand_as(x), x)


def _place_rect(r: torch.Tensor, h: int, w: int, lo: float, hi: float):
    """(N, 4) uniforms (width, height, left, top) → integer pixel width, height, left column and top
    row of a rectangle with sides in [lo, hi] of the image side, placed uniformly inside it."""
    rw = ((lo + (hi - lo) * r[:, 0]) * w).round().long().clamp(1, w)
    rh = ((lo + (hi - lo) * r[:, 1]) * h).round().long().clamp(1, h)
    return rw, rh, (r[:, 2] * (w - rw + 1)).long(), (r[:, 3] * (h - rh + 1)).long()


def _multi_mask(n: int, h: int, w: int, g: torch.Generator, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut-out form ``multi``: 1 to ``MULTI_CUTOUTS`` axis-aligned rectangles per image (count
    uniform), each with sides uniform in [lo, hi] of the image side at a uniform place, so what is
    left of an object is an irregular, often concave outline rather than a square with one corner
    or side missing. → the (N,) uniforms that decide whether an image is cut and the (N, H, W) union
    of its rectangles; draws ``2 + 4·MULTI_CUTOUTS`` values per image."""
    u = torch.rand(n, 2 + 4 * MULTI_CUTOUTS, generator=g)  # use?, count, then (width, height, x0, y0) per rectangle
    count = 1 + (u[:, 1] * MULTI_CUTOUTS).long().clamp(max=MULTI_CUTOUTS - 1)  # (N,) in 1..MULTI_CUTOUTS
    inside = torch.zeros(n, h, w, dtype=torch.bool)
    for k in range(MULTI_CUTOUTS):
        rw, rh, x0, y0 = _place_rect(u[:, 2 + 4 * k: 6 + 4 * k], h, w, lo, hi)
        inside |= rotated_rect_mask(h, w, x0 + rw / 2.0, y0 + rh / 2.0, rw, rh, torch.zeros(n)) & (k < count)[:, None, None]
    return u[:, 0], inside


def _sample_sigma(cfg: TrainConfig, n: int, g: torch.Generator) -> torch.Tensor:
    """(N,) training noise levels: lognormal(p_mean, p_std), and with ``low_share`` > 0 each image
    instead draws from lognormal(low_mean, low_std) with that probability (two more draws per
    image; a run without it draws exactly as before)."""
    z = torch.randn(n, generator=g)
    log_sigma = cfg.p_mean + cfg.p_std * z
    if cfg.low_share > 0:
        z_low, u = torch.randn(n, generator=g), torch.rand(n, generator=g)
        log_sigma = torch.where(u < cfg.low_share, cfg.low_mean + cfg.low_std * z_low, log_sigma)
    return torch.exp(log_sigma)  # (N,)


def haze_field(n: int, shape: tuple[int, int, int], levels: float, g: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) faint colour casts in the [-1, 1] image scale: per image and channel a constant
    plus a smooth field (a 4×4 normal grid, bilinear), scaled so that the image's rms is a uniform
    draw in [0, ``levels``] grey levels of 255 (one level is 2/255)."""
    c, h, w = shape
    amp, const, grid = torch.rand(n, generator=g), torch.randn(n, c, 1, 1, generator=g), torch.randn(n, c, 4, 4, generator=g)
    field = const + torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    rms = field.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-8)
    return field / rms * (amp * levels * 2.0 / 255.0)[:, None, None, None]


def denoise_loss(net: UNet, x0: torch.Tensor, cond: torch.Tensor, cfg: TrainConfig, g: torch.Generator,
                 rows: slice | None = None, total: int | None = None, denoiser: Callable | None = None,
                 autocast: bool = False) -> torch.Tensor:
    """EDM-weighted denoising loss; at the EDM weight it equals the ε-loss ‖ε̂ − n‖² scaled per σ.

    ``x0`` and ``cond`` may be rows ``rows`` of a batch of ``total`` images (one rank's shard): σ and
    the noise are drawn for the whole batch and the shard's rows kept, so the shards of all ranks
    together compute exactly the one-process loss. ``denoiser`` (default ``net.denoise``) is the
    DistributedDataParallel wrapper under torchrun; ``autocast`` runs it in bf16 (CUDA).
    """
    n = x0.shape[0]
    total = n if total is None else total
    rows = slice(0, n) if rows is None else rows
    sigma = _sample_sigma(cfg, total, g)[rows].to(x0.device)
    noise = torch.randn((total,) + tuple(x0.shape[1:]), generator=g)[rows].to(x0.device)
    xt = x0 + sigma[:, None, None, None] * noise
    if cfg.haze > 0:
        xt = xt + (haze_field(total, tuple(x0.shape[1:]), cfg.haze, g)[rows].to(x0.device)
                   * (sigma < cfg.haze_below)[:, None, None, None])
    sd = net.config.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2  # (N,)
    with torch.autocast(device_type=x0.device.type, dtype=torch.bfloat16, enabled=autocast):
        d = (denoiser or net.denoise)(xt, sigma, cond)
    return (weight[:, None, None, None] * (d.float() - x0) ** 2).mean()


def dsm_loss(net: EnergyNet, x0: torch.Tensor, cond: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """Denoising score matching on a noise-conditional energy: ‖σ·∇ₓE(x̃, σ) − n‖² (double backprop)."""
    n = x0.shape[0]
    sigma = _sample_sigma(cfg, n, g).to(x0.device)
    noise = torch.randn(x0.shape, generator=g).to(x0.device)
    xt = (x0 + sigma[:, None, None, None] * noise).requires_grad_(True)
    e = net(xt, sigma, cond)
    (grad,) = torch.autograd.grad(e.sum(), xt, create_graph=True)
    return ((sigma[:, None, None, None] * grad - noise) ** 2).mean()


class ReplayBuffer:
    """The paper's replay buffer: negatives start from stored samples 95% of the time, else noise."""

    def __init__(self, size: int, shape: tuple[int, ...], cond_width: int):
        self.x = torch.empty((0,) + shape)
        self.cond = torch.empty((0, cond_width))
        self.size = size

    def state(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "cond": self.cond}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.x, self.cond = state["x"], state["cond"]

    def init(self, cond: torch.Tensor, reuse: float, g: torch.Generator) -> torch.Tensor:
        n = cond.shape[0]
        x = torch.rand((n,) + tuple(self.x.shape[1:]), generator=g) * 2 - 1
        if len(self.x):
            use = torch.rand(n, generator=g) < reuse
            pick = torch.randint(0, len(self.x), (n,), generator=g)
            # A reused chain keeps its own image but takes this batch's condition.
            x[use] = self.x[pick[use]]
        return x

    def push(self, x: torch.Tensor, cond: torch.Tensor) -> None:
        self.x = torch.cat([x.detach().cpu(), self.x])[: self.size]
        self.cond = torch.cat([cond.detach().cpu(), self.cond])[: self.size]


def cd_loss(
    net: EnergyNet, x0: torch.Tensor, cond: torch.Tensor, cfg: TrainConfig, g: torch.Generator, buffer: ReplayBuffer
) -> torch.Tensor:
    """Contrastive divergence: E(x⁺) − E(x⁻) + reg·(E(x⁺)² + E(x⁻)²), negatives by Langevin from the buffer."""
    xn = buffer.init(cond.cpu(), cfg.cd_reuse, g).to(x0.device)
    was_training = net.training
    for p in net.parameters():
        p.requires_grad_(False)
    for _ in range(cfg.cd_steps):
        xn = xn.detach().requires_grad_(True)
        e = net(xn, None, cond)
        (grad,) = torch.autograd.grad(e.sum(), xn)
        noise = torch.randn(xn.shape, generator=g).to(x0.device)
        # Gradient clamp (the paper's stabiliser) keeps a single step from blowing a chain away.
        xn = (xn - cfg.cd_step_size * grad.clamp(-0.01, 0.01) + cfg.cd_noise * noise).clamp(-1, 1)
    for p in net.parameters():
        p.requires_grad_(True)
    net.train(was_training)
    xn = xn.detach()
    buffer.push(xn, cond)
    e_pos = net(x0, None, cond)
    e_neg = net(xn, None, cond)
    return (e_pos - e_neg).mean() + cfg.cd_reg * (e_pos**2 + e_neg**2).mean()


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


class _Denoise(torch.nn.Module):
    """``forward`` = ``net.denoise``: what DistributedDataParallel wraps, so its hooks see the call."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net.denoise(x, sigma, cond)


def distributed() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> tuple[int, int, str]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1 in the environment): NCCL on
    CUDA, gloo on CPU. Returns (rank, world size, this rank's device: ``cuda:LOCAL_RANK`` on CUDA).
    Without torchrun: (0, 1, device)."""
    import os

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            local = int(os.environ.get("LOCAL_RANK", "0"))
            device = f"cuda:{local}"
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    elif device.startswith("cuda"):
        device = f"cuda:{torch.cuda.current_device()}"
    return dist.get_rank(), dist.get_world_size(), device


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, device: str = "cpu", data_workers: int = 0, data=None,
                 export: bool | None = None):
        """A run of ``cfg`` in ``run_dir`` on ``device``.

        ``data``: the opened labelled folder (:func:`conceptlang.data.labelled.open_data`) of a run
        with ``cfg.data``; opened here when not given. ``export`` (default: on for labelled-folder
        runs) writes the EMA weights and a model manifest into the run folder at every checkpoint,
        so the run folder is a models folder (``--models RUN``). Under torchrun (see the module
        docstring) ``cfg.batch_size`` is the global batch and must divide by the world size.
        """
        validate_config(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.rank, self.world = distributed()
        if cfg.batch_size % self.world:
            raise ModelError(f"batch size {cfg.batch_size} does not divide among {self.world} processes")
        if self.world > 1 and cfg.method != "denoise":
            raise ModelError(f"training with several processes supports method 'denoise', not {cfg.method!r}")
        per = cfg.batch_size // self.world
        self.rows = slice(self.rank * per, (self.rank + 1) * per)  # this rank's images of every batch
        torch.manual_seed(cfg.seed)  # parameter init
        self.net = build_network(cfg).to(self.device)
        self.ema = build_network(cfg).to(self.device)
        self.ema.load_state_dict(self.net.state_dict())
        self.ema.requires_grad_(False)
        self.denoiser = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.denoiser = DistributedDataParallel(_Denoise(self.net), device_ids=ids)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        shard = (self.rows.start, self.rows.stop)
        if cfg.data:
            if data is None:
                from conceptlang.data.labelled import open_data

                data = open_data(cfg.data, image_size=domain_of(cfg).image_size, **cfg.data_options)
            if data.domain.to_json()["families"] != cfg.data_domain["families"]:
                raise ModelError(f"the labelled folder {cfg.data} no longer declares the families this run was started with")
            self.stream: DataStream | FolderStream = FolderStream(cfg, data, workers=data_workers, shard=shard)
        else:
            self.stream = DataStream(cfg, workers=data_workers, shard=shard)
        self.export = bool(cfg.data) if export is None else export
        self.it = 0
        self.seconds = 0.0
        self.init_it = 0  # iterations the warm-start source had been trained for
        self.buffer = None
        if cfg.method == "cd":
            c = self.net.config
            self.buffer = ReplayBuffer(cfg.cd_buffer, (c.channels, c.image_size, c.image_size), sum(s.width for s in c.slots))

    def warm_start(self, source: str | Path) -> int:
        """Start from another run's weights (net and EMA); returns the source's iteration count.

        Every tensor must match in shape except input convolutions that gained channels (e.g. a
        spatial condition map added to a trained model), whose new input channels start at zero, and
        U-Net refine blocks the source lacks, which start as the identity: the warm-started network
        computes exactly what the source did until training moves them.
        The optimizer starts fresh (with the usual warm-up).
        """
        path = Path(source)
        if path.is_dir():
            path = path / "checkpoint.pt"
        if path.suffix == ".safetensors":
            st = _exported_as_checkpoint(path)
        else:
            st = load_checkpoint(path, self.device)
        for key, module in (("net", self.net), ("ema", self.ema)):
            fresh = getattr(module, "fresh_parameter", lambda name: False)
            module.load_state_dict(_grow_inputs(st[key], module.state_dict(), path, fresh))
        self.init_it = int(st.get("it", 0)) + int(st.get("init_it", 0))
        return self.init_it

    # ---- checkpoints ----
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": json.dumps(self.cfg.to_json()),
            "it": self.it,
            "seconds": self.seconds,
            "init_it": self.init_it,
            "net": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "gen": self.gen.get_state(),
            "buffer": self.buffer.state() if self.buffer is not None else {},
        }

    def save(self) -> None:
        """Write the checkpoint (rank 0; every file atomically) and, with ``export``, the run's models."""
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", self.cfg.to_json())
            write_json(self.run_dir / "net_config.json", self.net.config.to_json())
            state = self.state_dict()
            save_checkpoint(state, self.checkpoint_path)
            if self.export:
                self.export_models(state)
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def export_models(self, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make the run folder a models folder: the EMA weights (fp16 safetensors, a new file name
        per checkpoint) and ``manifest.json`` with the model's entry, written atomically after the
        weights; the previous weights file is deleted only then, so the manifest always names a
        complete file. Sampler settings, guidance and metrics already in the run's manifest (tuned
        by hand, say) are kept; a new manifest gets :data:`RUN_SAMPLER`. Returns the entry."""
        from conceptlang.models.export import export_run
        from conceptlang.models.registry import MANIFEST

        state = self.state_dict() if state is None else state
        name = self.cfg.name
        path = self.run_dir / MANIFEST
        old: dict[str, Any] = {}
        if path.is_file():
            try:
                old = next((e for e in json.loads(path.read_text())["models"] if e.get("name") == name), {})
            except (OSError, ValueError, KeyError, TypeError):
                old = {}
        file = f"{name}.it{self.it:07d}.safetensors"
        entry = export_run(self.run_dir, self.run_dir, name=name, state=state, file=file,
                           sampler=None if old.get("sampler") else dict(RUN_SAMPLER))
        for stale in self.run_dir.glob(f"{name}.it*.safetensors"):
            if stale.name != file:
                stale.unlink(missing_ok=True)
        return entry

    def load(self) -> None:
        st = load_checkpoint(self.checkpoint_path, self.device)
        if st.get("format") != CHECKPOINT_FORMAT:
            raise ModelError(f"{self.checkpoint_path}: checkpoint format {st.get('format')} (expected {CHECKPOINT_FORMAT})")
        saved = TrainConfig.from_json(json.loads(st["config"]))
        for key in ("domain", "method", "families", "net", "batch_size", "seed", "data_seed", "chunk_size", "splits",
                    "image_size", "data_options", "data_domain"):
            if getattr(saved, key) != getattr(self.cfg, key):
                raise ModelError(f"cannot resume {self.checkpoint_path}: {key} was {getattr(saved, key)!r}, now {getattr(self.cfg, key)!r}")
        self.net.load_state_dict(st["net"])
        self.ema.load_state_dict(st["ema"])
        self.opt.load_state_dict(st["opt"])
        self.gen.set_state(st["gen"])
        self.it = int(st["it"])
        self.seconds = float(st["seconds"])
        self.init_it = int(st.get("init_it", 0))
        if self.buffer is not None and st["buffer"]:
            self.buffer.load(st["buffer"])
        self._trim_log()

    def _trim_log(self) -> None:
        """Drop log rows past the checkpoint (written by a run killed before its next checkpoint):
        the resumed run writes them again."""
        log = self.run_dir / "log.jsonl"
        if self.rank != 0 or not log.is_file():
            return
        rows = log.read_text().splitlines()
        keep = []
        for row in rows:
            try:
                if int(json.loads(row)["it"]) > self.it:
                    continue
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the kill
            keep.append(row)
        if keep != rows:
            from conceptlang.io import write_text

            write_text(log, "".join(r + "\n" for r in keep))

    # ---- one step ----
    def step(self) -> float:
        """One optimizer step; returns the batch's loss (the mean over every rank's images)."""
        cfg = self.cfg
        x0, idx, pos = self.stream.batch(self.it)  # this rank's images, the whole batch's labels
        cond = training_conditions(self.net.config.slots, idx, pos, cfg.cond_dropout, self.gen, cfg.p_null, cfg.p_single)
        cond = cond[self.rows]
        if cfg.cutout > 0:  # drawn for the whole batch, like everything random (module docstring)
            whole = torch.zeros((cfg.batch_size,) + tuple(x0.shape[1:]))
            whole[self.rows] = x0
            x0 = cutout(whole, cfg.cutout, self.gen, form=cfg.cutout_form)[self.rows]
        x0, cond = x0.to(self.device), cond.to(self.device)
        lr = learning_rate(cfg, self.it)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.net.train()
        if cfg.method == "denoise":
            loss = denoise_loss(self.net, x0, cond, cfg, self.gen, rows=self.rows, total=cfg.batch_size,
                                denoiser=self.denoiser, autocast=self.device.type == "cuda")
        elif cfg.method == "dsm":
            loss = dsm_loss(self.net, x0, cond, cfg, self.gen)
        else:
            loss = cd_loss(self.net, x0, cond, cfg, self.gen, self.buffer)
        seen = loss.detach()
        if self.world > 1:  # every rank sees the batch's loss, so all of them stop together on a NaN
            import torch.distributed as dist

            seen = seen.clone()
            dist.all_reduce(seen)
            seen /= self.world
        if not torch.isfinite(seen):
            raise ModelError(f"training {cfg.name}: loss became {seen.item()} at iteration {self.it}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
        self.opt.step()
        with torch.no_grad():
            # The EMA window grows with the run (≈ ema_rel × iterations, capped by ema_decay): a fixed
            # 1000-step window kept far-too-early weights in short CPU runs and visibly hurt samples.
            d = min(cfg.ema_decay, max(0.0, 1.0 - 1.0 / (cfg.ema_rel * (self.it + 1) + 1.0)))
            for pe, p in zip(self.ema.parameters(), self.net.parameters()):
                pe.lerp_(p, 1 - d)
            for be, b in zip(self.ema.buffers(), self.net.buffers()):
                be.copy_(b)
        self.it += 1
        return float(seen.item())

    def train(self, until: int | None = None, progress: bool = True,
              on_checkpoint: Callable[["Trainer"], None] | None = None) -> list[float]:
        """Run to iteration ``until`` (default ``cfg.iters``); checkpoint periodically and at the end."""
        from tqdm import tqdm

        until = self.cfg.iters if until is None else until
        losses: list[float] = []
        log_path = self.run_dir / "log.jsonl"
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(self.stream, FolderStream):
            self.stream.until = until
        bar = tqdm(total=until, initial=self.it, disable=not progress or self.rank != 0, desc=self.cfg.name, dynamic_ncols=True)
        window: list[float] = []
        t0 = time.perf_counter()
        try:
            while self.it < until:
                loss = self.step()
                losses.append(loss)
                window.append(loss)
                bar.update(1)
                if self.it % self.cfg.log_every == 0 or self.it == until:
                    now = time.perf_counter()
                    self.seconds += now - t0
                    t0 = now
                    mean = sum(window) / len(window)
                    bar.set_postfix(loss=f"{mean:.4f}")
                    with open(log_path if self.rank == 0 else os.devnull, "a") as fh:
                        row = {"it": self.it, "loss": mean, "lr": learning_rate(self.cfg, self.it - 1), "seconds": round(self.seconds, 1)}
                        fh.write(json.dumps(row) + "\n")
                    window = []
                if self.it % self.cfg.checkpoint_every == 0 or self.it == until:
                    self.save()
                    if on_checkpoint is not None:
                        on_checkpoint(self)
        finally:
            bar.close()
            self.stream.close()
        return losses


def iters_for_budget(rate: float, seconds: float, done: int = 0, safety: float = 0.9) -> int:
    """The ``iters`` a run at ``rate`` iterations/s reaches in ``seconds`` (times ``safety``), after ``done``."""
    if not (rate > 0 and math.isfinite(rate)) or seconds <= 0 or not 0 < safety <= 1:
        raise ModelError(f"cannot size a run: rate={rate} it/s, budget={seconds} s, safety={safety}")
    return done + max(1, int(rate * seconds * safety))


def measure_rate(cfg: TrainConfig, device: str = "cpu", data_workers: int = 0, steps: int = 60, skip: int = 20,
                 data=None, max_seconds: float | None = None) -> float:
    """Iterations per second of ``cfg`` on ``device``, timed on a throwaway copy of the run.

    The copy trains ``steps`` iterations in a temporary folder (nothing of it is kept; the real
    run's weights, generator and data stream are untouched); the first ``skip`` are not timed
    (start-up, first chunk, kernel selection). ``max_seconds`` bounds the probe of a slow run: the
    untimed steps stop after a quarter of it and the timed ones after the rest (at least three are
    timed). Used by ``conceptlang train --time-budget``.
    """
    import tempfile
    from dataclasses import replace

    if steps <= skip:
        raise ModelError(f"measure_rate: steps ({steps}) must exceed skip ({skip})")
    limit = math.inf if max_seconds is None else float(max_seconds)
    probe_cfg = replace(cfg, iters=steps, checkpoint_every=10**9, log_every=10**9, init_from="")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Trainer(probe_cfg, tmp, device=device, data_workers=data_workers, data=data, export=False)
        try:
            start = time.perf_counter()
            done = 0
            while done < skip and time.perf_counter() - start < limit / 4:
                probe.step()
                done += 1
            t0 = time.perf_counter()
            timed = 0
            while timed < steps - skip and (timed < 3 or time.perf_counter() - start < limit):
                probe.step()
                timed += 1
            elapsed = time.perf_counter() - t0
        finally:
            probe.stream.close()
    return timed / max(elapsed, 1e-9)


def _exported_as_checkpoint(path: Path) -> dict[str, Any]:
    """An exported model (fp16 safetensors listed in the manifest beside it) as warm-start weights.

    Read through the registry's loader, so the manifest is validated and the file's sha256
    verified. The exported weights are the EMA, so they start both the network and its EMA; the
    iteration count is the manifest entry's (with any earlier warm start).
    """
    from conceptlang.models.registry import MANIFEST, load_weights, read_manifest

    def refuse(why: str) -> ModelError:
        return ModelError(f"cannot read exported weights {path} to start from: {why}")

    try:
        entries = read_manifest(path.parent)
    except ModelError as err:
        raise refuse(str(err)) from None
    entry = next((e for e in entries if e["file"] == path.name), None)
    if entry is None:
        raise refuse(f"{path.parent / MANIFEST} lists no model with that file")
    weights = load_weights(entry, path.parent, torch.device("cpu")).state_dict()
    tr = entry.get("training", {})
    it = int(tr.get("iterations", 0)) + int(tr.get("warm_start", {}).get("iterations", 0))
    return {"net": weights, "ema": weights, "it": it}


def _grow_inputs(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], where: Path,
                 fresh=lambda name: False) -> dict[str, torch.Tensor]:
    """``source`` reshaped to ``target``: conv weights with more input channels get zero columns, and
    tensors the source lacks keep the target's initialisation where ``fresh(name)`` allows it."""
    out = {}
    for name, t in target.items():
        s = source.get(name)
        if s is None and fresh(name):
            out[name] = t
            continue
        if s is None:
            raise ModelError(f"{where}: has no tensor {name!r}; cannot start from it")
        if s.shape != t.shape:
            grows = s.dim() == 4 and s.shape[0] == t.shape[0] and s.shape[2:] == t.shape[2:] and s.shape[1] < t.shape[1]
            if not grows:
                raise ModelError(f"{where}: {name} has shape {tuple(s.shape)}, this network needs {tuple(t.shape)}")
            grown = torch.zeros_like(t)
            grown[:, : s.shape[1]] = s
            s = grown
        out[name] = s
    return out


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))
