"""Training the judges on generator output only (a few CPU minutes each, one thread)::

    conceptlang judge train scenes|faces|all -o DIR [--steps N]

* ``scenes``: the object network on 24×24 crops of single-object scenes drawn uniformly over all
  36 shape × colour × size combinations (held-out ones included), cropped around the jittered
  centroid as inference crops after segmentation;
* ``faces``: the face network on the generator's faces plus half as many images of the corruption
  set (:func:`conceptlang.judge.validity.corruptions`, the kinds of ``FACE_HEAD_KINDS``: the
  broken-face kinds are failed by the computed generator fit, not the head) for the validity head.

Both are trained with the noise, blur and brightness augmentation of :mod:`conceptlang.judge.augment`.
The checkpoint and its manifest entry (with the figures of :func:`conceptlang.judge.measure.measure`)
are written into the output folder.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from conceptlang.data import faces as fc
from conceptlang.data import scenes as sc
from conceptlang.errors import ModelError
from conceptlang.io import sha256_file
from conceptlang.judge import validity as V
from conceptlang.judge.augment import Augmentation, augment
from conceptlang.judge.judge import Judge
from conceptlang.judge.load import clear_cache
from conceptlang.judge.measure import measure
from conceptlang.judge.networks import JUDGE_SIZE, NETWORKS, crop, to_input
from conceptlang.models.manifest import MANIFEST, load_judges_manifest, update_judges_manifest

FORMAT_VERSION = 1  # of a checkpoint's safetensors metadata


@dataclass
class TrainConfig:
    domain: str
    steps: int
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    width: int = 32
    # the augmentation's probabilities and noise level (conceptlang.judge.augment.Augmentation)
    noise_p: float = Augmentation.noise_p
    noise_max: float = Augmentation.noise_max
    blur_p: float = Augmentation.blur_p
    gain_p: float = Augmentation.gain_p


# Per-domain training defaults. faces: 64 real + 32 corrupted images per step, and the full 32×32
# input (scenes read a 24×24 crop), so a narrower trunk.
TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "scenes": {"steps": 1500, "batch_size": 128, "width": 32},
    "faces": {"steps": 1800, "batch_size": 64, "width": 16},
}


def default_config(domain: str, **overrides: Any) -> TrainConfig:
    """The training configuration of ``domain``'s shipped judge; ``None`` overrides are ignored."""
    if domain not in TRAINING_DEFAULTS:
        raise ModelError(f"no judge for domain {domain!r} (judges: {', '.join(TRAINING_DEFAULTS)})")
    fields = {**TRAINING_DEFAULTS[domain], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(domain, **fields)


def _all_combination_scenes(n: int, seed: int) -> sc.SceneArrays:
    # The judge must read every combination, held-out ones included: draw all 36 uniformly.
    rng = np.random.default_rng([seed, 99])
    shape, color, size = rng.integers(0, 3, n), rng.integers(0, 6, n), rng.integers(0, 2, n)
    half = sc.half_extent(shape, sc.EXTENT_ARRAY[size])
    lo, hi = sc.MARGIN + half, 1 - sc.MARGIN - half
    pos = lo + (hi - lo) * rng.random((n, 2))
    return sc.SceneArrays(index={"shape": shape[:, None], "color": color[:, None], "size": size[:, None]},
                          positions=pos[:, None].astype(np.float32))


def _scene_training_batch(cfg: TrainConfig, step: int, gen: torch.Generator):
    arrays = _all_combination_scenes(cfg.batch_size, cfg.seed * 1_000_003 + step)
    imgs = torch.from_numpy(sc.render_scenes(arrays, JUDGE_SIZE)).permute(0, 3, 1, 2).float()
    imgs = augment(imgs, cfg, gen)
    # Crop around the (jittered) centroid, as inference does after segmentation.
    pos = arrays.positions[:, 0] * JUDGE_SIZE
    tri = arrays.index["shape"][:, 0] == 2
    centroid_y = pos[:, 1] + np.where(tri, sc.TRIANGLE_HEIGHT * sc.EXTENT_ARRAY[arrays.index["size"][:, 0]] * JUDGE_SIZE / 6, 0)
    jitter = torch.rand(cfg.batch_size, 2, generator=gen).numpy() * 2 - 1
    cx, cy = pos[:, 0] + jitter[:, 0], centroid_y + jitter[:, 1]
    arr = imgs.permute(0, 2, 3, 1).round().to(torch.uint8).numpy()
    crops = np.stack([crop(arr[i], cx[i], cy[i], None, np.zeros(3)) for i in range(cfg.batch_size)])
    x = to_input(crops)
    y = {f: torch.from_numpy(arrays.index[f][:, 0]) for f in ("shape", "color", "size")}
    return x, y


class _CorruptionPool:
    def __init__(self, n: int, seed: int):
        self.images, self.kinds = V.corruptions("faces", n, seed=seed, kinds=V.FACE_HEAD_KINDS)

    def draw(self, k: int, gen: torch.Generator) -> np.ndarray:
        idx = torch.randint(0, len(self.images), (k,), generator=gen).numpy()
        return self.images[idx]


def _face_training_batch(cfg: TrainConfig, step: int, gen: torch.Generator, pool: _CorruptionPool):
    n_real = cfg.batch_size
    n_bad = cfg.batch_size // 2
    imgs, arrays = fc.generate_faces(n_real, cfg.seed * 1_000_003 + step)
    bad = pool.draw(n_bad, gen)
    x = torch.from_numpy(np.concatenate([imgs, bad])).permute(0, 3, 1, 2).float()
    # Corrupted images get the same augmentation, so noise/blur are no cue for validity.
    x = augment(x, cfg, gen) / 127.5 - 1.0
    y = {"hair": torch.from_numpy(arrays.index["hair"][:, 0])}
    for b in fc.BINARY:
        y[b] = torch.from_numpy((arrays.index[b][:, 0] == 0).astype(np.float32))
    y["valid"] = torch.cat([torch.ones(n_real), torch.zeros(n_bad)])
    y["position"] = torch.from_numpy(arrays.positions[:, 0])
    return x, y


def train_judge(cfg: TrainConfig, out_dir: Path, log=print) -> dict:
    """Train one judge, measure it, write its checkpoint and manifest entry; returns the entry."""
    from safetensors.torch import save_file

    from conceptlang.io import atomic_path

    if (out_dir / MANIFEST).is_file():
        load_judges_manifest(out_dir)  # a manifest the new entry cannot join is refused before training
    torch.set_num_threads(1)  # the CPU is shared with EBM training
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = NETWORKS[cfg.domain](width=cfg.width)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    pool = _CorruptionPool(4096, seed=cfg.seed + 1) if cfg.domain == "faces" else None
    t0 = time.time()
    net.train()
    for step in range(cfg.steps):
        if cfg.domain == "scenes":
            x, y = _scene_training_batch(cfg, step, gen)
            out = net(x)
            loss = sum(F.cross_entropy(out[f], y[f]) for f in ("shape", "color", "size"))
        else:
            x, y = _face_training_batch(cfg, step, gen, pool)
            out = net(x)
            n_real = cfg.batch_size
            loss = F.cross_entropy(out["hair"][:n_real], y["hair"])
            for b in fc.BINARY:
                loss = loss + F.binary_cross_entropy_with_logits(out[b][:n_real, 0], y[b])
            loss = loss + F.binary_cross_entropy_with_logits(out["valid"][:, 0], y["valid"])
            loss = loss + 20 * F.mse_loss(out["position"][:n_real], y["position"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            log(f"[{cfg.domain}] step {step:5d}/{cfg.steps}  loss {loss.item():.4f}  {time.time() - t0:6.1f}s")
    net.eval()
    judge = Judge(cfg.domain, net)
    metrics = measure(judge, log=log)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{cfg.domain}.safetensors"
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(tmp),
                  metadata={"format_version": str(FORMAT_VERSION), "domain": cfg.domain})
    entry = {
        "domain": cfg.domain,
        "file": path.name,
        "sha256": sha256_file(path),
        "architecture": {"class": type(net).__name__, "kwargs": {"width": cfg.width},
                         "parameters": sum(p.numel() for p in net.parameters())},
        "training": {**asdict(cfg), "seconds": round(time.time() - t0, 1), "threads": 1,
                     "data": "generator output only (scenes: all 36 combinations; faces: train split + corruption set)"},
        "metrics": metrics,
    }
    update_judges_manifest(out_dir, lambda manifest: manifest["judges"].__setitem__(cfg.domain, entry), create=True)
    clear_cache()
    return entry
