"""Judges: small classifiers, trained only on generator output, that read labels off images.

    >>> from conceptlang.judge.judge import load_judge
    >>> judge = load_judge("scenes")
    >>> labels = judge.labels(images_uint8)     # list of label dicts in the shared format
    >>> ok = judge.valid(images_uint8)          # bool (N,): a well-formed image of the domain?

* ``scenes``: segmentation first (:mod:`conceptlang.judge.validity`: background from the
  border, 8-connected components), then a small CNN reads shape, colour and size from a 24×24 crop
  around each object (other objects blanked), so two-object scenes get one label set per object.
  Position is computed: the object's coverage-weighted centroid, moved up by h/6 when the CNN says
  triangle (the label is the centre of the shape's box). Validity is the computed check.
* ``faces``: one CNN on the whole 32×32 image with a head per family (hair: 4-way; male, smiling,
  eyeglasses, young: binary), a face-centre regression head, and a validity head trained to tell
  real faces (clean, noisy or blurred) from the corruption set.

Both are trained with noise, blur and brightness augmentation so they also read imperfect samples.
Inputs of another size are resized to 32×32 (box filter) first. Checkpoints are safetensors under
``models/judges/`` with ``manifest.json`` (sha256, architecture, training config, measured accuracy);
the checksum is verified on load.

Train and measure (a few CPU minutes each, one thread)::

    conceptlang judge train scenes|faces|all -o DIR [--steps N]
    conceptlang judge eval scenes|faces|all [--judges DIR] [--update]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from conceptlang.data import faces as fc
from conceptlang.data import scenes as sc
from conceptlang.errors import DataError, ModelError
from conceptlang.io import sha256_file
from conceptlang.judge import validity as V

FORMAT_VERSION = 1
JUDGE_SIZE = 32
CROP = 24  # scenes crop side at 32×32; the largest object is ≈ 17.3 px wide


def judges_dir() -> Path:
    from conceptlang.resources import shipped_models_dir

    return shipped_models_dir() / "judges"


# ---- networks --------------------------------------------------------------------------------


class SceneObjectNet(nn.Module):
    """(B, 3, 24, 24) crop in [-1, 1] → shape (3), colour (6), size (2) logits."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),  # 12×12
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),  # 6×6
            nn.Flatten(),
            nn.Linear(2 * w * 36, 128), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({"shape": nn.Linear(128, 3), "color": nn.Linear(128, 6), "size": nn.Linear(128, 2)})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        return {k: head(h) for k, head in self.heads.items()}


FACE_HEADS = {"hair": 4, "male": 1, "smiling": 1, "eyeglasses": 1, "young": 1, "valid": 1, "position": 2}


def face_trunk(w: int) -> nn.Sequential:
    """The whole-image trunk of the faces judges: (B, 3, 32, 32) → (B, 128) features."""
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1), nn.ReLU(),
        nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),  # 16×16
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),  # 8×8
        nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * w * 64, 128), nn.ReLU(),
    )


class FaceNet(nn.Module):
    """(B, 3, 32, 32) in [-1, 1] → hair (4) logits, one logit per binary family, validity logit,
    face centre (x, y) in [0, 1]."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.features = face_trunk(width)
        self.heads = nn.ModuleDict({k: nn.Linear(128, d) for k, d in FACE_HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        out = {k: head(h) for k, head in self.heads.items()}
        # Predict the centre as an offset from the canvas middle: a raw head starts at 0, and the
        # large early error of regressing 0.5 from scratch was enough to kill every ReLU of the trunk.
        out["position"] = out["position"] + 0.5
        return out


NETWORKS = {"scenes": SceneObjectNet, "faces": FaceNet}


# ---- image handling --------------------------------------------------------------------------


def _check_images(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise DataError(f"the judge needs uint8 images of shape (N, H, W, 3), got {arr.dtype} {arr.shape}")
    if arr.shape[1] != arr.shape[2]:
        raise DataError(f"the judge needs square images, got {arr.shape[1]}×{arr.shape[2]}")
    if arr.shape[1] != JUDGE_SIZE:
        from PIL import Image

        arr = np.stack([np.asarray(Image.fromarray(a).resize((JUDGE_SIZE, JUDGE_SIZE), Image.BOX)) for a in arr])
    return arr


def _to_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _crop(image: np.ndarray, cx: float, cy: float, blank: np.ndarray | None, bg: np.ndarray) -> np.ndarray:
    """CROP×CROP window of ``image`` centred on (cx, cy) pixels; ``blank`` pixels and outside → bg."""
    img = image.copy()
    if blank is not None and blank.size:
        img.reshape(-1, 3)[blank] = bg.astype(np.uint8)
    half = CROP // 2
    x0, y0 = int(np.floor(cx)) - half, int(np.floor(cy)) - half
    out = np.empty((CROP, CROP, 3), np.uint8)
    out[:] = bg.astype(np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + CROP, img.shape[1]), min(y0 + CROP, img.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out


# ---- the judge -------------------------------------------------------------------------------


class Judge:
    """Reads labels (shared format) and validity off uint8 (N, H, W, 3) images of one domain."""

    def __init__(self, domain: str, net: nn.Module, entry: dict | None = None, batch_size: int = 512):
        self.domain = domain
        self.net = net.eval()
        self.entry = entry or {}
        self.batch_size = batch_size

    @property
    def metrics(self) -> dict:
        return dict(self.entry.get("metrics", {}))

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for s in range(0, len(x), self.batch_size):
                res = self.net(_to_input(x[s : s + self.batch_size]))
                for k, v in res.items():
                    outs.setdefault(k, []).append(v.numpy())
        return {k: np.concatenate(v) for k, v in outs.items()}

    # -- scenes
    def _scene_objects(self, imgs: np.ndarray) -> tuple[list[V.SceneAnalysis], list[list[dict]]]:
        analyses = V.analyse_scenes(imgs, with_shapes=False)
        crops, owners = [], []
        for i, an in enumerate(analyses):
            for k, obj in enumerate(an.objects):
                others = [o.pixels for j, o in enumerate(an.objects) if j != k]
                blank = np.concatenate(others) if others else None
                crops.append(_crop(imgs[i], obj.centroid[0], obj.centroid[1], blank, an.background))
                owners.append((i, k))
        objects: list[list[dict]] = [[] for _ in range(len(imgs))]
        if crops:
            out = self._run(np.stack(crops))
            shape, color, size = (out[f].argmax(1) for f in ("shape", "color", "size"))
            for c, (i, k) in enumerate(owners):
                obj = analyses[i].objects[k]
                cx, cy = obj.centroid
                if shape[c] == 2:  # triangle: centroid sits h/6 below the box centre
                    cy -= sc.TRIANGLE_HEIGHT * sc.EXTENT_ARRAY[size[c]] * JUDGE_SIZE / 6
                objects[i].append({
                    "x": round(float(cx / JUDGE_SIZE), 4), "y": round(float(cy / JUDGE_SIZE), 4),
                    "shape": sc.SHAPES[shape[c]], "color": sc.COLORS[color[c]], "size": sc.SIZES[size[c]],
                })
        return analyses, objects

    def labels(self, images: np.ndarray) -> list[dict]:
        """Judged labels per image: qualified + bare booleans and ``objects`` (shared format)."""
        imgs = _check_images(images)
        if self.domain == "scenes":
            _, objects = self._scene_objects(imgs)
            out = []
            for objs in objects:
                lab: dict[str, Any] = {}
                for fam, values in sc.DISCRETE_FAMILIES:
                    present = {o[fam] for o in objs}
                    for v in values:
                        lab[f"{fam}.{v}"] = lab[v] = v in present
                lab["objects"] = objs
                out.append(lab)
            return out
        res = self._run(imgs)
        hair = res["hair"].argmax(1)
        out = []
        for i in range(len(imgs)):
            flags = {h: bool(hair[i] == j) for j, h in enumerate(fc.HAIR)}
            flags.update({b: bool(res[b][i, 0] > 0) for b in fc.BINARY})
            pos = np.clip(res["position"][i], 0, 1)
            out.append(fc.face_labels(flags, float(pos[0]), float(pos[1])))
        return out

    def valid(self, images: np.ndarray, n_objects: int | tuple[int, ...] | None = None) -> np.ndarray:
        """bool (N,): is each image a well-formed image of the domain?

        Scenes: the computed check with ``n_objects`` objects (None: one; a tuple: any of those
        counts; the count an expression asks for is :func:`conceptlang.syntax.objects.expected_objects`).
        Faces: the trained validity head (``n_objects`` must be None or 1)."""
        imgs = _check_images(images)
        if self.domain == "scenes":
            return V.scenes_valid(imgs, n_objects)
        if n_objects not in (None, 1, (1,)):
            raise DataError(f"a face image holds one face, not {n_objects}")
        return self._run(imgs)["valid"][:, 0] > 0

    def reasons(self, images: np.ndarray, n_objects: int | tuple[int, ...] | None = None) -> list[list[str]]:
        """Why each image is invalid (empty list when valid)."""
        imgs = _check_images(images)
        if self.domain == "scenes":
            return [a.reasons(n_objects) for a in V.analyse_scenes(imgs)]
        return [[] if v else ["the validity head does not see a cartoon face"] for v in self.valid(imgs)]


# ---- loading ---------------------------------------------------------------------------------


def read_manifest(directory: Path) -> dict:
    path = directory / "manifest.json"
    if not path.is_file():
        raise ModelError(f"no judge manifest at {path}; train the judges with "
                         "`conceptlang judge train all -o DIR`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("judges"), dict):
        raise ModelError(f"{path}: expected an object with a 'judges' mapping")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: format_version {manifest.get('format_version')!r}, this code reads {FORMAT_VERSION}")
    return manifest


_CACHE: dict[tuple[str, str], Judge] = {}


def load_judge(domain: str, directory: str | Path | None = None) -> Judge:
    """The judge for ``domain`` ("scenes" or "faces"), checksum-verified; cached per directory."""
    if domain not in NETWORKS:
        raise ModelError(f"no judge for domain {domain!r} (judges: {', '.join(NETWORKS)})")
    d = Path(directory) if directory is not None else judges_dir()
    key = (str(d.resolve()), domain)
    if key in _CACHE:
        return _CACHE[key]
    manifest = read_manifest(d)
    entry = manifest["judges"].get(domain)
    if not isinstance(entry, dict) or "file" not in entry or "sha256" not in entry:
        raise ModelError(f"{d / 'manifest.json'}: no valid entry for the {domain!r} judge")
    path = d / entry["file"]
    if not path.is_file():
        raise ModelError(f"judge checkpoint missing: {path}")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ModelError(f"judge checkpoint {path} fails its checksum: sha256 {digest}, manifest says {entry['sha256']}")
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
        net = NETWORKS[domain](**entry.get("architecture", {}).get("kwargs", {}))
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as err:  # safetensors/torch raise many types for a damaged file
        raise ModelError(f"cannot load judge checkpoint {path}: {err}") from None
    judge = Judge(domain, net, entry)
    _CACHE[key] = judge
    return judge


# ---- training --------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    domain: str
    steps: int
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    width: int = 32
    noise_p: float = 0.5  # probability of additive Gaussian noise, σ ~ U(0, noise_max) (0-255 scale)
    noise_max: float = 20.0
    blur_p: float = 0.3  # probability of a Gaussian blur, σ ~ U(0.3, 1.0) px
    gain_p: float = 0.3  # probability of a brightness gain ~ U(0.75, 1.1) and a colour shift ±12


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


def _gauss_kernels(sigmas: torch.Tensor) -> torch.Tensor:
    r = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-(r[None] ** 2) / (2 * sigmas[:, None] ** 2))
    return k / k.sum(1, keepdim=True)  # (B, 5)


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Noise / blur / gain augmentation of float images (B, 3, H, W) in 0..255."""
    b = x.shape[0]
    # Blur: separable 5-tap Gaussian with a per-image σ, as a grouped convolution.
    blur = torch.rand(b, generator=gen) < cfg.blur_p
    if blur.any():
        xb = x[blur]
        k = _gauss_kernels(0.3 + 0.7 * torch.rand(int(blur.sum()), generator=gen))
        n = xb.shape[0]
        kh = k.repeat_interleave(3, 0)[:, None, None, :]  # (n*3, 1, 1, 5)
        y = xb.reshape(1, n * 3, *xb.shape[2:])
        y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kh, groups=n * 3)
        y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kh.transpose(2, 3), groups=n * 3)
        x = x.clone()
        x[blur] = y.reshape(xb.shape)
    gain = torch.rand(b, generator=gen) < cfg.gain_p
    if gain.any():
        g = 0.75 + 0.35 * torch.rand(int(gain.sum()), 1, 1, 1, generator=gen)
        shift = (torch.rand(int(gain.sum()), 3, 1, 1, generator=gen) - 0.5) * 24
        x = x.clone()
        x[gain] = x[gain] * g + shift * (x[gain] > 30).float()
    noisy = torch.rand(b, generator=gen) < cfg.noise_p
    if noisy.any():
        s = cfg.noise_max * torch.rand(int(noisy.sum()), 1, 1, 1, generator=gen)
        x = x.clone()
        x[noisy] = x[noisy] + s * torch.randn(x[noisy].shape, generator=gen)
    return x.clamp(0, 255)


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
    crops = np.stack([_crop(arr[i], cx[i], cy[i], None, np.zeros(3)) for i in range(cfg.batch_size)])
    x = _to_input(crops)
    y = {f: torch.from_numpy(arrays.index[f][:, 0]) for f in ("shape", "color", "size")}
    return x, y


class _CorruptionPool:
    def __init__(self, n: int, seed: int):
        self.images, self.kinds = V.corruptions("faces", n, seed=seed)

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

    from conceptlang.io import atomic_path, write_json

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
    manifest_path = out_dir / "manifest.json"
    manifest = {"format_version": FORMAT_VERSION, "judges": {}}
    if manifest_path.is_file():
        try:
            manifest = read_manifest(out_dir)
        except ModelError:
            pass
    manifest["judges"][cfg.domain] = entry
    write_json(manifest_path, manifest)
    _CACHE.clear()
    return entry


# ---- measurement -----------------------------------------------------------------------------

EVAL_SEED = 424_242  # never used in training (training seeds are seed * 1_000_003 + step)


def _augment_np(images: np.ndarray, kind: str, seed: int) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    gen = torch.Generator().manual_seed(seed)
    if kind == "noisy":
        cfg = TrainConfig("x", 1, noise_p=1.0, noise_max=20.0, blur_p=0.0, gain_p=0.0)
    elif kind == "blurred":
        cfg = TrainConfig("x", 1, noise_p=0.0, blur_p=1.0, gain_p=0.0)
    else:
        return images
    return augment(x, cfg, gen).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _match_objects(pred: list[dict], true: list[dict]) -> list[tuple[dict, dict | None]]:
    pairs, used = [], set()
    for t in true:
        best, bd = None, np.inf
        for j, p in enumerate(pred):
            d = (p["x"] - t["x"]) ** 2 + (p["y"] - t["y"]) ** 2
            if j not in used and d < bd:
                best, bd = j, d
        if best is not None:
            used.add(best)
        pairs.append((t, pred[best] if best is not None else None))
    return pairs


def measure(judge: Judge, n: int = 2000, log=print) -> dict:
    """Held-out accuracy per family (clean, noisy, blurred) and validity on real vs corrupted."""
    from conceptlang.data import generate

    t0 = time.time()
    metrics: dict[str, Any] = {"n": n, "eval_seed": EVAL_SEED, "accuracy": {}, "validity": {}}
    if judge.domain == "scenes":
        for split in ("train", "heldout", "two_objects"):
            imgs, labels = generate("scenes", n, seed=EVAL_SEED, split=split)
            for cond in ("clean", "noisy", "blurred"):
                x = _augment_np(imgs, cond, EVAL_SEED)
                pred = judge.labels(x)
                correct = {f: 0 for f in ("shape", "color", "size")}
                total, errs, count_ok = 0, [], 0
                for p, t in zip(pred, labels):
                    count_ok += len(p["objects"]) == len(t["objects"])
                    for tt, pp in _match_objects(p["objects"], t["objects"]):
                        total += 1
                        if pp is None:
                            continue
                        for f in correct:
                            correct[f] += pp[f] == tt[f]
                        errs.append(max(abs(pp["x"] - tt["x"]), abs(pp["y"] - tt["y"])))
                row = {f: round(c / total, 4) for f, c in correct.items()}
                row["object_count"] = round(count_ok / n, 4)
                row["position_mean_abs_error"] = round(float(np.mean(errs)), 4) if errs else None
                row["position_p99_error"] = round(float(np.quantile(errs, 0.99)), 4) if errs else None
                metrics["accuracy"][f"{split}/{cond}"] = row
                log(f"  {split:12s} {cond:8s} {row}")
        real_valid = {}
        for split in ("train", "heldout", "continual1", "continual2", "continual3", "two_objects"):
            imgs, _ = generate("scenes", n, seed=EVAL_SEED + 1, split=split)
            stated = 2 if split == "two_objects" else 1
            real_valid[split] = round(float(judge.valid(imgs, n_objects=stated).mean()), 4)
        imgs, _ = generate("scenes", n, seed=EVAL_SEED + 2)
        real_valid["train (noisy σ≤20)"] = round(float(judge.valid(_augment_np(imgs, "noisy", 1)).mean()), 4)
        real_valid["train (blurred)"] = round(float(judge.valid(_augment_np(imgs, "blurred", 1)).mean()), 4)
    else:
        imgs, labels = generate("faces", n, seed=EVAL_SEED)
        for cond in ("clean", "noisy", "blurred"):
            pred = judge.labels(_augment_np(imgs, cond, EVAL_SEED))
            row = {"hair": round(float(np.mean([p["objects"][0]["hair"] == t["objects"][0]["hair"]
                                                for p, t in zip(pred, labels)])), 4)}
            for b in fc.BINARY:
                row[b] = round(float(np.mean([p[b] == t[b] for p, t in zip(pred, labels)])), 4)
            errs = [max(abs(p["objects"][0]["x"] - t["objects"][0]["x"]), abs(p["objects"][0]["y"] - t["objects"][0]["y"]))
                    for p, t in zip(pred, labels)]
            row["position_mean_abs_error"] = round(float(np.mean(errs)), 4)
            metrics["accuracy"][cond] = row
            log(f"  faces {cond:8s} {row}")
        imgs, _ = generate("faces", n, seed=EVAL_SEED + 1)
        real_valid = {"train": round(float(judge.valid(imgs).mean()), 4)}
        real_valid["train (noisy σ≤20)"] = round(float(judge.valid(_augment_np(imgs, "noisy", 1)).mean()), 4)
        real_valid["train (blurred)"] = round(float(judge.valid(_augment_np(imgs, "blurred", 1)).mean()), 4)
    untrained = {}
    if judge.domain == "faces":
        # Failure modes the validity head never saw in training (500 images each).
        faces, _ = generate("faces", 500, seed=EVAL_SEED + 3)
        scenes, _ = generate("scenes", 500, seed=EVAL_SEED + 3)
        for name, imgs in {
            "scenes images": scenes,
            "upside-down faces": faces[:, ::-1].copy(),
            "colour-inverted faces": 255 - faces,
            "faces shifted 8 px sideways": np.roll(faces, 8, axis=2),
        }.items():
            untrained[name] = round(float(1 - judge.valid(imgs).mean()), 4)
    bad, kinds = V.corruptions(judge.domain, n, seed=EVAL_SEED)
    ok = judge.valid(bad)
    failed = {k: round(float(np.mean([not o for o, kk in zip(ok, kinds) if kk == k])), 4) for k in dict.fromkeys(kinds)}
    failed["all"] = round(float(1 - ok.mean()), 4)
    metrics["validity"] = {"real_pass_rate": real_valid, "corrupted_fail_rate": failed}
    if untrained:
        metrics["validity"]["untrained_fail_rate"] = untrained
    log(f"  validity real pass: {real_valid}")
    log(f"  validity corrupted fail: {failed}")
    metrics["seconds"] = round(time.time() - t0, 1)
    return metrics


def markdown_tables(directory: Path | None = None) -> str:
    """The manifest's measured figures as markdown tables (for docs/data.md)."""
    manifest = read_manifest(directory or judges_dir())
    lines = []
    for dom, entry in manifest["judges"].items():
        acc = entry["metrics"]["accuracy"]
        rows = list(acc.items())
        cols = [c for c in rows[0][1] if c != "position_p99_error"]
        lines += [f"**{dom}** ({entry['architecture']['parameters']:,} parameters, "
                  f"{entry['training']['steps']} steps, {entry['training']['seconds']:.0f} s on one thread)", "",
                  "| images | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
                  "| --- |" + " --- |" * len(cols)]
        for name, row in rows:
            lines.append(f"| {name} | " + " | ".join("" if row[c] is None else f"{row[c]:.4f}" for c in cols) + " |")
        lines.append("")
    for dom, entry in manifest["judges"].items():
        v = entry["metrics"]["validity"]
        real, bad = list(v["real_pass_rate"].items()), list(v["corrupted_fail_rate"].items())
        lines += [f"**{dom} validity**", "", "| real images | pass | corrupted images | fail |", "| --- | --- | --- | --- |"]
        for k in range(max(len(real), len(bad))):
            a = f"{real[k][0]} | {real[k][1]:.4f}" if k < len(real) else " | "
            b = f"{bad[k][0]} | {bad[k][1]:.4f}" if k < len(bad) else " | "
            lines.append(f"| {a} | {b} |")
        lines.append("")
        if v.get("untrained_fail_rate"):
            lines += [f"**{dom} validity on failure modes not in training**", "", "| images | fail |", "| --- | --- |"]
            lines += [f"| {k} | {x:.4f} |" for k, x in v["untrained_fail_rate"].items()]
            lines.append("")
    return "\n".join(lines)


def store_metrics(directory: Path, domain: str, metrics: dict) -> None:
    """Write re-measured figures of ``domain``'s judge (same checkpoint) into its manifest."""
    from conceptlang.io import write_json

    manifest = read_manifest(directory)
    if domain not in manifest["judges"]:
        raise ModelError(f"{directory / 'manifest.json'}: no entry for the {domain!r} judge")
    manifest["judges"][domain]["metrics"] = metrics
    write_json(directory / "manifest.json", manifest)
    _CACHE.clear()
