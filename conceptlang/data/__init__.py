"""Procedural data domains (``scenes``, ``faces``) and the real-CelebA loader.

    >>> from conceptlang.data import get_domain, generate
    >>> images, labels = generate(get_domain("scenes"), 4, seed=0)
    >>> images.shape, images.dtype
    ((4, 32, 32, 3), dtype('uint8'))

``generate`` returns labels in the shared dict format (see :mod:`conceptlang.data.domain`). For
training loops use ``generate(..., as_arrays=True)``, which returns the same images with the labels as
integer index arrays per family (:class:`~conceptlang.data.scenes.SceneArrays` /
:class:`~conceptlang.data.faces.FaceArrays`) instead of one dict per image.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from conceptlang.data.domain import Domain, Family
from conceptlang.errors import DataError

# domain name -> module that defines it (imported on first use; each exposes DOMAIN/generate_arrays).
_DOMAIN_MODULES = {"scenes": "conceptlang.data.scenes", "faces": "conceptlang.data.faces"}

__all__ = ["Domain", "Family", "DOMAIN_NAMES", "check_split", "get_domain", "generate", "label_arrays", "splits",
           "to_tensor", "to_uint8"]

# domain name -> its label-only sampler (the labels ``generate`` draws, without rendering pixels)
_LABEL_SAMPLERS = {"scenes": "sample_scene_arrays", "faces": "sample_face_arrays"}

DOMAIN_NAMES: tuple[str, ...] = tuple(_DOMAIN_MODULES)


def _module(name: str):
    if name not in _DOMAIN_MODULES:
        raise DataError(f"unknown domain {name!r} (domains: {', '.join(_DOMAIN_MODULES)})")
    return importlib.import_module(_DOMAIN_MODULES[name])


def get_domain(name: str) -> Domain:
    """The :class:`Domain` called ``name`` ("scenes" or "faces")."""
    return getattr(_module(name), name.upper())


def splits(domain: Domain | str) -> dict[str, str]:
    """The domain's splits: name -> one-line description."""
    name = domain if isinstance(domain, str) else domain.name
    return dict(_module(name).SPLITS)


def check_split(domain: Domain | str, split: str) -> None:
    """Raise :class:`~conceptlang.errors.DataError` naming the domain's splits unless it has ``split``."""
    name = domain if isinstance(domain, str) else domain.name
    known = _module(name).SPLITS
    if split not in known:
        raise DataError(f"{name} has no split {split!r} (splits: {', '.join(known)})")


def generate(
    domain: Domain | str,
    n: int,
    seed: int = 0,
    split: str = "train",
    image_size: int | None = None,
    as_arrays: bool = False,
    **kw: Any,
) -> tuple[np.ndarray, Any]:
    """Generate ``n`` labelled images of ``domain``, deterministically from ``seed``.

    Returns ``(images, labels)``: ``images`` is uint8 (N, H, W, 3); ``labels`` is a list of label
    dicts in the shared format, or with ``as_arrays=True`` the domain's array form
    (``SceneArrays``/``FaceArrays``: ``.index[family]`` int64 (N, K) value indices,
    ``.positions`` float32 (N, K, 2) centres (x, y); ``.to_dicts()`` gives the dicts).
    Same (seed, split, image_size) → same images; geometry does not depend on ``image_size``.
    """
    name = domain if isinstance(domain, str) else domain.name
    mod = _module(name)
    if kw:
        raise DataError(f"generate() for {name!r} got unknown options: {', '.join(sorted(kw))}")
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise DataError(f"n must be a non-negative integer, got {n!r}")
    check_split(name, split)
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 8):
        raise DataError(f"image_size must be an integer >= 8, got {image_size!r}")
    images, arrays = mod.generate_arrays(int(n), int(seed), split, image_size)
    return images, (arrays if as_arrays else arrays.to_dicts())


def label_arrays(domain: Domain | str, n: int, seed: int = 0, split: str = "train"):
    """The labels of ``generate(domain, n, seed, split, as_arrays=True)`` without the pixels (fast):
    ``.index[family]`` int64 (N, K) value indices, −1 where no value holds.

    ``split="domain"``: the domain's whole one-object distribution — for scenes the ``train`` and
    ``heldout`` splits in proportion (32 : 4 combinations, so every shape × colour × size triple
    is equally likely), for faces ``train`` (nothing is held out).
    """
    name = domain if isinstance(domain, str) else domain.name
    mod = _module(name)
    if split == "domain":
        if name != "scenes":
            return label_arrays(name, n, seed, "train")
        n_held = int(n) * len(mod.HELDOUT_COMBINATIONS) // 36
        a = mod.sample_scene_arrays(int(n) - n_held, int(seed), "train")
        b = mod.sample_scene_arrays(n_held, int(seed), "heldout")
        return mod.SceneArrays({k: np.concatenate([a.index[k], b.index[k]]) for k in a.index},
                               np.concatenate([a.positions, b.positions]))
    check_split(name, split)
    return getattr(mod, _LABEL_SAMPLERS[name])(int(n), int(seed), split)


def to_tensor(images: np.ndarray):
    """uint8 (N, H, W, 3) → float32 torch tensor (N, 3, H, W) in [-1, 1]."""
    import torch

    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise DataError(f"expected uint8 images of shape (N, H, W, 3), got {arr.dtype} {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
    """float tensor or array (N, 3, H, W) in [-1, 1] → uint8 numpy (N, H, W, 3); values are clamped."""
    import torch

    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim != 4 or x.shape[1] != 3:
        raise DataError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()
