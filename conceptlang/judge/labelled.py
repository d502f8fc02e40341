"""A judge for any labelled image folder (``conceptlang judge train --data DIR --out J``).

Labels: a small CNN on the image resized to 32×32 with one head per discrete family of the data
(a softmax over the values, plus a "no value" class where some images have none; one logit for a
yes/no attribute such as ``male``), trained on the folder's images with the procedural judges'
noise/blur/brightness augmentation, a held-out tenth kept aside for measuring it.

Validity, for a domain with no generator to define "a well-formed image", is two tests that a
sample must both pass:

* **confidence**: the judge's least confident family (its top probability) is at least the
  value that 99% of held-out real images reach;
* **distance to the nearest real image**: the RMS pixel distance (0–255 scale, at 16×16) to the
  closest of a bank of training images is at most the distance that 99% of held-out real images
  stay within.

The thresholds are set on one half of the held-out tenth and the metrics measured on the other,
so about 2% of real images are called invalid by construction. What this catches: noise,
blank or washed-out images, colour-shifted, scrambled or badly blurred ones, anything far from
every training image at 16×16, and images the judge cannot read one attribute from. What it does
not catch: a copy (or a near-copy) of a training image passes however memorised it is; defects
smaller than a 16×16 pixel (a broken eye, a wrong ear) do not move the distance; a confident judge
can be wrong on images unlike its training data; and a novel but good image can be refused when
the bank is small compared with the data's variety (real CelebA at 1,024 bank images: expect a
real-image pass rate near 98% only on images like the held-out ones, and measure it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from conceptlang.errors import DataError, ModelError
from conceptlang.io import sha256_file
from conceptlang.judge.load import load_judge
from conceptlang.judge.networks import face_trunk
from conceptlang.models.manifest import MANIFEST, load_judges_manifest, update_judges_manifest, verified_file

FORMAT_VERSION = 1
KIND = "labelled"
SIZE = 32  # the judge reads images at this side
BANK_SIZE = 16  # nearest-real-image distances are measured at this side
QUANTILE = 0.99  # share of held-out real images that pass each validity test


class LabelNet(nn.Module):
    """(B, 3, 32, 32) in [-1, 1] → one logit vector per family head."""

    def __init__(self, heads: dict[str, int], width: int = 16):
        super().__init__()
        self.features = face_trunk(width)
        self.heads = nn.ModuleDict({k: nn.Linear(128, d) for k, d in heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        return {k: head(h) for k, head in self.heads.items()}


def _resize(images: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[1] != arr.shape[2]:
        raise DataError(f"the judge needs square uint8 images of shape (N, S, S, 3), got {arr.dtype} {arr.shape}")
    if arr.shape[1] == side:
        return arr
    return np.stack([np.asarray(Image.fromarray(a).resize((side, side), Image.BOX)) for a in arr])


def _to_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class LabelledJudge:
    """Reads a labelled folder's families and validity off uint8 (N, H, W, 3) images."""

    def __init__(self, domain: str, families: list[dict], net: LabelNet, bank: np.ndarray, thresholds: dict,
                 entry: dict | None = None, batch_size: int = 256):
        self.domain = domain
        self.families = families  # [{"name", "values", "none": bool}] in head order
        self.net = net.eval()
        self.bank = torch.from_numpy(bank.reshape(len(bank), -1).astype(np.float32))  # (M, 16·16·3)
        self.thresholds = thresholds  # {"confidence": c, "distance": d}
        self.entry = entry or {}
        self.batch_size = batch_size

    @property
    def metrics(self) -> dict:
        return dict(self.entry.get("metrics", {}))

    def _probs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = _resize(images, SIZE)
        out: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for s in range(0, len(x), self.batch_size):
                res = self.net(_to_input(x[s: s + self.batch_size]))
                for f in self.families:
                    logit = res[f["name"]]
                    p = torch.sigmoid(logit) if _binary(f) else torch.softmax(logit, dim=1)
                    out.setdefault(f["name"], []).append(p.numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    def predict(self, images: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per family the predicted value index (−1: none / does not hold), and the confidence (N,):
        the lowest over families of the probability of the predicted value."""
        probs = self._probs(images)
        pred, conf = {}, []
        for f in self.families:
            p = probs[f["name"]]
            if _binary(f):
                pred[f["name"]] = np.where(p[:, 0] > 0.5, 0, -1)
                conf.append(np.maximum(p[:, 0], 1 - p[:, 0]))
            else:
                k = p.argmax(1)
                pred[f["name"]] = np.where(k < len(f["values"]), k, -1)
                conf.append(p.max(1))
        return pred, np.min(np.stack(conf), axis=0) if conf else np.ones(len(images))

    def features(self, images: np.ndarray) -> np.ndarray:
        """The trunk's 128 features (N, 128) per image (the distribution metrics' feature space)."""
        x = _resize(images, SIZE)
        with torch.no_grad():
            return np.concatenate([self.net.features(_to_input(x[s: s + self.batch_size])).numpy()
                                   for s in range(0, len(x), self.batch_size)]) if len(x) else np.zeros((0, 128))

    def distances(self, images: np.ndarray) -> np.ndarray:
        """RMS pixel distance (0–255) at 16×16 from each image to its nearest bank image."""
        x = torch.from_numpy(_resize(images, BANK_SIZE).reshape(len(images), -1).astype(np.float32))
        d2 = torch.cdist(x, self.bank).pow(2).min(dim=1).values / x.shape[1]
        return d2.clamp_min(0).sqrt().numpy()

    def labels(self, images: np.ndarray) -> list[dict]:
        pred, _ = self.predict(images)
        out = []
        for i in range(len(pred[self.families[0]["name"]]) if self.families else len(images)):
            lab: dict[str, Any] = {}
            obj: dict[str, Any] = {"x": 0.5, "y": 0.5}
            for f in self.families:
                k = int(pred[f["name"]][i])
                for j, v in enumerate(f["values"]):
                    lab[f"{f['name']}.{v}"] = lab[v] = k == j
                obj[f["name"]] = (k == 0) if _binary(f) else (f["values"][k] if k >= 0 else None)
            lab["objects"] = [obj]
            out.append(lab)
        return out

    def _tests(self, images: np.ndarray, n_objects: int | None) -> tuple[np.ndarray, np.ndarray]:
        if n_objects not in (None, 1):
            raise DataError(f"the {self.domain} judge reads one labelled object per image, not {n_objects}")
        _, conf = self.predict(images)
        return conf >= self.thresholds["confidence"], self.distances(images) <= self.thresholds["distance"]

    def valid(self, images: np.ndarray, n_objects: int | None = None) -> np.ndarray:
        sure, near = self._tests(images, n_objects)
        return sure & near

    def reasons(self, images: np.ndarray, n_objects: int | None = None) -> list[list[str]]:
        sure, near = self._tests(images, n_objects)
        out = []
        for s, n in zip(sure, near):
            why = []
            if not s:
                why.append("the judge cannot read every attribute confidently")
            if not n:
                why.append("far from every real image")
            out.append(why)
        return out


def _binary(f: dict) -> bool:
    return len(f["values"]) == 1


def _heads(families: list[dict]) -> dict[str, int]:
    return {f["name"]: 1 if _binary(f) else len(f["values"]) + int(f["none"]) for f in families}


# ---- training ------------------------------------------------------------------------------------


def _targets(families: list[dict], index: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, torch.Tensor]:
    out = {}
    for f in families:
        k = index[f["name"]][rows, 0]
        if _binary(f):
            out[f["name"]] = torch.from_numpy((k == 0).astype(np.float32))
        else:
            out[f["name"]] = torch.from_numpy(np.where(k >= 0, k, len(f["values"])).astype(np.int64))
    return out


def _load(data, rows: np.ndarray, workers: int) -> np.ndarray:
    """Images ``rows`` of ``data`` (opened at the judge's size), read by ``workers`` processes."""
    from conceptlang.models.training import _FolderImages, _stack_images

    loader = torch.utils.data.DataLoader(_FolderImages(data), batch_size=256, sampler=list(map(int, rows)),
                                         num_workers=workers, collate_fn=_stack_images)
    parts = []
    for batch in loader:
        if isinstance(batch, str):
            raise DataError(batch)
        parts.append(batch)
    return np.concatenate(parts) if parts else np.zeros((0, SIZE, SIZE, 3), np.uint8)


def corrupt(images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Generic failure modes made from real images (uint8 (N, S, S, 3)), for measuring validity."""
    rng = np.random.default_rng(seed)
    n, s = images.shape[0], images.shape[1]
    x = images.astype(np.float32)
    blocks = images.reshape(n, 4, s // 4, 4, s // 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, 16, s // 4, s // 4, 3)
    shuffled = np.stack([b[rng.permutation(16)] for b in blocks]).reshape(n, 4, 4, s // 4, s // 4, 3)
    shuffled = shuffled.transpose(0, 1, 3, 2, 4, 5).reshape(n, s, s, 3)
    from PIL import Image, ImageFilter

    blurred = np.stack([np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(s / 16))) for a in images])
    return {
        "uniform noise": rng.integers(0, 256, images.shape, dtype=np.uint8),
        "heavy noise (σ 60)": np.clip(x + rng.normal(0, 60, x.shape), 0, 255).astype(np.uint8),
        "flat mean colour": np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).round().astype(np.uint8),
        "4×4 blocks shuffled": shuffled.astype(np.uint8),
        "colour-inverted": (255 - images).astype(np.uint8),
        "blurred (σ = side/16)": blurred.astype(np.uint8),
    }


def train_labelled_judge(data_dir: str | Path, out_dir: str | Path, steps: int = 1500, batch_size: int = 64,
                         width: int = 16, lr: float = 2e-3, seed: int = 0, bank: int = 1024, workers: int = 2,
                         attributes: str | None = None, group_hair: bool = False, split: str = "train",
                         log=print) -> dict:
    """Train a judge of the labelled folder ``data_dir``; write ``<domain>.safetensors``, its real-image
    bank and the manifest entry into ``out_dir``; returns the entry (with held-out metrics)."""
    from safetensors.torch import save_file

    from conceptlang.data.labelled import open_data
    from conceptlang.io import atomic_path
    from conceptlang.judge.augment import Augmentation, augment

    if (Path(out_dir) / MANIFEST).is_file():
        load_judges_manifest(out_dir)  # a manifest the new entry cannot join is refused before training
    data = open_data(data_dir, attributes=attributes, group_hair=group_hair, split=split, image_size=SIZE)
    n = len(data)
    if n < 10:
        raise DataError(f"{data_dir}: {n} images; a judge needs at least 10 (a tenth is held out)")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    perm = np.random.default_rng([seed, 11]).permutation(n)
    n_test = max(1, n // 10)
    test, train = perm[:n_test], perm[n_test:]
    families = [{"name": f.name, "values": list(f.values), "none": bool((data.index[f.name] < 0).any()) and len(f.values) > 1}
                for f in data.domain.families if f.kind == "discrete"]
    if not families:
        raise DataError(f"{data_dir}: no discrete family to judge")
    net = LabelNet(_heads(families), width=width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    aug = Augmentation()
    t0 = time.time()
    # the training rows in one stream of seeded epochs, read ahead by worker processes
    order = np.concatenate([np.random.default_rng([seed, 12, e]).permutation(train)
                            for e in range(-(-steps * batch_size // len(train)))])[: steps * batch_size]
    from conceptlang.models.training import _FolderImages, _stack_images

    loader = torch.utils.data.DataLoader(_FolderImages(data), batch_size=batch_size, sampler=list(map(int, order)),
                                         num_workers=workers, collate_fn=_stack_images, drop_last=True)
    net.train()
    for step, images in enumerate(loader):
        if isinstance(images, str):
            raise DataError(images)
        rows = order[step * batch_size: (step + 1) * batch_size]
        x = augment(torch.from_numpy(images).permute(0, 3, 1, 2).float(), aug, gen) / 127.5 - 1.0
        y = _targets(families, data.index, rows)
        out = net(x)
        loss = sum(F.binary_cross_entropy_with_logits(out[f["name"]][:, 0], y[f["name"]]) if _binary(f)
                   else F.cross_entropy(out[f["name"]], y[f["name"]]) for f in families)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"[judge {data.domain.name}] step {step:5d}/{steps}  loss {loss.item():.4f}  {time.time() - t0:6.1f}s")
    net.eval()
    bank_rows = np.random.default_rng([seed, 13]).permutation(train)[:bank]
    bank_images = _resize(_load(data, bank_rows, workers), BANK_SIZE)
    held = _load(data, test, workers)
    judge = LabelledJudge(data.domain.name, families, net, bank_images, {"confidence": 0.0, "distance": np.inf})
    # thresholds from one half of the held-out real images (the 1% least confident / farthest are
    # refused), measured on the other half
    half = max(1, n_test // 2)
    _, conf = judge.predict(held[:half])
    dist = judge.distances(held[:half])
    judge.thresholds = {"confidence": float(np.quantile(conf, 1 - QUANTILE)), "distance": float(np.quantile(dist, QUANTILE))}
    rest = slice(half, None) if n_test > half else slice(0, None)
    metrics = measure_labelled(judge, held[rest], data.index, test[rest])
    log(f"  held-out accuracy {metrics['accuracy']}; validity {metrics['validity']}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = data.domain.name
    weights = out_dir / f"{name}.safetensors"
    with atomic_path(weights) as tmp:
        save_file({**{k: v.detach().contiguous() for k, v in net.state_dict().items()},
                   "bank": torch.from_numpy(bank_images)}, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
    entry = {
        "kind": KIND, "domain": name, "file": weights.name, "sha256": sha256_file(weights),
        "families": families, "thresholds": judge.thresholds,
        "architecture": {"class": "LabelNet", "kwargs": {"width": width}, "parameters": sum(p.numel() for p in net.parameters())},
        "training": {"data": data.describe(), "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                     "bank": int(len(bank_images)), "held_out": int(n_test), "seconds": round(time.time() - t0, 1)},
        "metrics": metrics,
    }
    update_judges_manifest(out_dir, lambda manifest: manifest["judges"].__setitem__(name, entry), create=True)
    return entry


def measure_labelled(judge: LabelledJudge, images: np.ndarray, index: dict[str, np.ndarray], rows: np.ndarray) -> dict:
    """Accuracy per family on held-out real images, their validity pass rate, and the fail rate of
    each generic corruption of them."""
    pred, _ = judge.predict(images)
    acc = {f["name"]: round(float(np.mean(pred[f["name"]] == index[f["name"]][rows, 0])), 4) for f in judge.families}
    real = round(float(judge.valid(images).mean()), 4)
    bad = {k: round(float(1 - judge.valid(v).mean()), 4) for k, v in corrupt(_resize(images, SIZE), seed=1).items()}
    return {"n": int(len(images)), "accuracy": acc, "validity": {"real_pass_rate": real, "corrupted_fail_rate": bad}}


def load_labelled_judge(directory: str | Path, entry: dict) -> LabelledJudge:
    """The labelled-folder judge of ``entry`` (a judges manifest entry of kind ``labelled``)."""
    from safetensors.torch import load_file

    path = verified_file(directory, entry, "judge checkpoint")
    try:
        state = load_file(str(path))
        bank = state.pop("bank").numpy()
        net = LabelNet(_heads(entry["families"]), **entry.get("architecture", {}).get("kwargs", {}))
        net.load_state_dict({k: v.float() for k, v in state.items()})
        return LabelledJudge(entry["domain"], entry["families"], net, bank, entry["thresholds"], entry)
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise ModelError(f"cannot load judge {path}: {err}") from None


def judge_loader(directory: str | Path):
    """``domain → judge`` from the judges folder ``directory``: a labelled-folder judge where its
    manifest entry is one, else the procedural judge stored there (``conceptlang judge train DOMAIN``)."""
    d = Path(directory)

    def load(domain: str):
        entry = load_judges_manifest(d)["judges"].get(domain)
        if entry is None:
            raise ModelError(f"{d / 'manifest.json'} has no judge for domain {domain!r}")
        if isinstance(entry, dict) and entry.get("kind") == KIND:
            return load_labelled_judge(d, entry)
        return load_judge(domain, d)

    return load
