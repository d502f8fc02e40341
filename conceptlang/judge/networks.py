"""The judges' networks and the input they read.

* ``scenes``: :class:`SceneObjectNet` reads shape, colour and size from a 24×24 crop around one
  segmented object (other objects blanked to the background), see :func:`scene_crops`;
* ``faces``: :class:`FaceNet` reads the whole 32×32 image: a head per family (hair: 4-way; male,
  smiling, eyeglasses, young: binary), a face-centre regression head and a validity head.

Inputs are uint8 (N, H, W, 3) images (:func:`check_images`: another square size is resized to
32×32 with a box filter), fed to the networks in [-1, 1] (:func:`to_input`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from conceptlang.errors import DataError

JUDGE_SIZE = 32
CROP = 24  # scenes crop side at 32×32; the largest object is ≈ 17.3 px wide


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


# ---- input -----------------------------------------------------------------------------------


def check_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, JUDGE_SIZE, JUDGE_SIZE, 3) from uint8 square images (one (H, W, 3) image is a batch
    of one; another size is resized with a box filter); DataError for anything else."""
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


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def crop(image: np.ndarray, cx: float, cy: float, blank: np.ndarray | None, bg: np.ndarray) -> np.ndarray:
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


def scene_crops(images: np.ndarray, analyses: list, centre_when_empty: bool = False) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """One :func:`crop` per segmented object of each image (``analyses``: its
    :func:`conceptlang.judge.validity.analyse_scenes`), centred on the object's centroid with the
    other objects blanked to the background; and (image, object) per crop. ``centre_when_empty``:
    an image without objects gets one crop at the canvas centre, object index -1."""
    crops, owners = [], []
    for i, an in enumerate(analyses):
        if not an.objects and centre_when_empty:
            crops.append(crop(images[i], JUDGE_SIZE / 2, JUDGE_SIZE / 2, None, an.background))
            owners.append((i, -1))
        for k, obj in enumerate(an.objects):
            others = [o.pixels for j, o in enumerate(an.objects) if j != k]
            blank = np.concatenate(others) if others else None
            crops.append(crop(images[i], obj.centroid[0], obj.centroid[1], blank, an.background))
            owners.append((i, k))
    return crops, owners
