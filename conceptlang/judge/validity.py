"""Is an image a well-formed member of its domain? Segmentation, the computed scenes check, and the
corruption set that the validity checks are measured against.

A classifier trained only on clean scenes calls multicoloured blobs "circle", so
judged labels are only evidence together with validity. For ``scenes`` validity is *computed*:

1. plain dark background: ≥ 90 % of the border pixels have every channel ≤ ``BG_MAX`` (40);
2. foreground = pixels differing from the background colour by more than ``FG_THRESHOLD`` (40) in
   some channel; 8-connected components of ≥ ``MIN_OBJECT_AREA`` (12 px at 32×32) are objects,
   and at most ``MAX_STRAY`` (3) foreground pixels may lie outside them;
3. the stated number of objects: the count the expression places (``conceptlang.syntax.objects``:
   one, or one per distinct position of a conjunction), one when not stated;
4. every object is uniformly coloured (channel std ≤ ``MAX_COLOR_STD``, 25, over its interior: the
   object eroded by one pixel, less pixels under 0.75 of its peak contrast with the background,
   which drops the anti-aliased or blurred rim) in a colour
   near the palette (RGB distance ≤ ``MAX_PALETTE_DIST``, 80) and has a domain shape: its soft
   coverage overlaps one of the 3 shapes × 2 sizes, rendered at its centre, with IoU ≥
   ``MIN_SHAPE_IOU`` (0.80).

Faces validity is the faces judge's trained head (:mod:`conceptlang.judge.judge`) together with a
computed check, the generator fit (:func:`fit_faces`, :func:`face_reasons`): the generator face that
best explains the image must leave no feature drawn part-way (half-transparent glasses, a ghost
smile or beard: ``MIN_OPACITY``, ``OPACITY_Z``), the image's contrast must be the generator's
(``MIN_FACE_GAIN``) and no region may be painted otherwise (a beard or side hair in another colour
than the cap: ``MAX_FACE_RESIDUAL``).
All functions take uint8 (N, H, W, 3) at 32×32 (the judge resizes other sizes first).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from conceptlang.data import scenes as sc

BG_MAX = 40
FG_THRESHOLD = 40
MIN_OBJECT_AREA = 12
MAX_STRAY = 3
MAX_COLOR_STD = 25.0
MIN_INTERIOR = 4  # interior pixels needed to read an object's colour off the eroded mask
INTERIOR_CONTRAST = 0.75  # ... among pixels with at least this share of the object's peak contrast
MAX_PALETTE_DIST = 80.0
MIN_SHAPE_IOU = 0.80  # calibrated on real sampler output, see docs/data.md ("Validity")
SIZE = 32


def stated_counts(n_objects: "int | Sequence[int] | None") -> tuple[int, ...]:
    """The object counts a valid scene may show: ``n_objects`` as a tuple; None is (1,)."""
    if n_objects is None:
        return (1,)
    counts = (n_objects,) if isinstance(n_objects, (int, np.integer)) else tuple(n_objects)
    if not counts or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1 for c in counts):
        raise ValueError(f"the stated object count must be an integer ≥ 1 (or several), got {n_objects!r}")
    return tuple(sorted({int(c) for c in counts}))


@dataclass
class SceneObject:
    """One segmented object (pixel units at 32×32; x, y from the top-left)."""

    pixels: np.ndarray  # flat indices into the H*W canvas
    coverage: np.ndarray  # (H, W) soft coverage in [0, 1], zero outside the object
    centroid: tuple[float, float]
    area: int
    rgb: np.ndarray  # (3,) interior colour
    color_std: float
    shape_iou: np.ndarray = field(default_factory=lambda: np.zeros((3, 2)))  # (shape, size)
    centres: np.ndarray = field(default_factory=lambda: np.zeros((3, 2, 2)))  # box centre per hypothesis

    @property
    def best_iou(self) -> float:
        return float(self.shape_iou.max())


@dataclass
class SceneAnalysis:
    background: np.ndarray  # (3,)
    border_dark: bool
    objects: list[SceneObject]
    stray: int

    def reasons(self, n_objects: "int | Sequence[int] | None" = None) -> list[str]:
        """Why this image is not a valid scene; empty when it is. ``n_objects``: the stated object
        count, or the counts an OR's branches allow; None is one object."""
        out = []
        if not self.border_dark:
            out.append("background is not plain dark")
        allowed = stated_counts(n_objects)
        if len(self.objects) not in allowed:
            out.append(f"{len(self.objects)} objects, expected {' or '.join(map(str, allowed))}")
        if self.stray > MAX_STRAY:
            out.append(f"{self.stray} stray foreground pixels")
        for k, o in enumerate(self.objects):
            if o.color_std > MAX_COLOR_STD:
                out.append(f"object {k} is not uniformly coloured (std {o.color_std:.0f})")
            dist = np.sqrt(((sc.PALETTE_ARRAY - o.rgb) ** 2).sum(1)).min()
            if dist > MAX_PALETTE_DIST:
                out.append(f"object {k} colour {tuple(int(v) for v in o.rgb)} is far from the palette")
            if o.best_iou < MIN_SHAPE_IOU:
                out.append(f"object {k} is not a domain shape (best IoU {o.best_iou:.2f})")
        return out


def connected_components(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a boolean (N, H, W) mask.

    Returns int64 (N, H, W): 0 off the mask, else 1 + the smallest flat pixel index of the pixel's
    component (so ids are unique within an image, not consecutive). Label propagation: each pass
    takes the minimum over the 3×3 neighbourhood, until nothing changes.
    """
    n, h, w = mask.shape
    big = np.iinfo(np.int64).max
    lab = np.where(mask, np.arange(h * w, dtype=np.int64).reshape(1, h, w) + 1, big)
    while True:
        pad = np.pad(lab, ((0, 0), (1, 1), (1, 1)), constant_values=big)
        m = lab.copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                np.minimum(m, pad[:, dy : dy + h, dx : dx + w], out=m)
        m = np.where(mask, m, big)
        if np.array_equal(m, lab):
            break
        lab = m
    return np.where(mask, lab, 0)


def _hypothesis_centres(centroid: tuple[float, float], size: int) -> np.ndarray:
    """Box centre (x, y) in pixels for each (shape, size) hypothesis, from a coverage centroid."""
    out = np.empty((3, 2, 2), dtype=np.float32)
    for z, ext in enumerate(sc.EXTENT_ARRAY):
        for s in range(3):
            dy = 0.0
            if s == 2:  # a triangle's centroid lies h/6 below the centre of its box
                dy = sc.TRIANGLE_HEIGHT * ext * size / 6
            out[s, z] = (centroid[0], centroid[1] - dy)
    return out


def _interior(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of ``mask`` whose four neighbours are all in it (one-pixel erosion).

    An object's colour is read there, off its anti-aliased rim. (Choosing the pixels by contrast
    alone, within 0.95 of the peak, as before, kept only the most contrasting part of a two-tone
    object: a triangle half blue, half cyan differs from black by nearly the same blue channel in
    both halves, so only one half was read and the object passed as uniformly coloured.)
    """
    m = np.pad(mask, 1)
    return mask & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]


def analyse_scenes(images: np.ndarray, with_shapes: bool = True) -> list[SceneAnalysis]:
    """Segment every image (uint8 (N, 32, 32, 3)) and measure what validity needs."""
    imgs = np.asarray(images)
    n, h, w, _ = imgs.shape
    f = imgs.astype(np.float32)
    border = np.concatenate([f[:, 0], f[:, -1], f[:, 1:-1, 0], f[:, 1:-1, -1]], axis=1)  # (N, B, 3)
    bg = np.median(border, axis=1)  # (N, 3)
    border_dark = ((border <= BG_MAX).all(-1)).mean(1) >= 0.9
    strength = np.abs(f - bg[:, None, None, :]).max(-1)  # (N, H, W)
    fg = strength > FG_THRESHOLD
    lab = connected_components(fg)
    px = np.arange(w, dtype=np.float32) + 0.5
    out = []
    for i in range(n):
        ids, counts = np.unique(lab[i][lab[i] > 0], return_counts=True)
        objects, stray = [], 0
        for cid, cnt in zip(ids, counts):
            if cnt < MIN_OBJECT_AREA * (h / SIZE) ** 2:
                stray += int(cnt)
                continue
            sel = lab[i] == cid
            s = strength[i][sel]
            strongest = s >= 0.95 * s.max()  # the object's most contrasting pixels
            # The colour is read away from the rim: inside the one-pixel erosion and, for softened
            # (blurred) edges, where the contrast is at least INTERIOR_CONTRAST of the peak.
            interior = _interior(sel)[sel] & (s >= INTERIOR_CONTRAST * s.max())
            if interior.sum() < MIN_INTERIOR:  # too thin to erode
                interior = strongest
            rgb_pixels = f[i][sel][interior]
            rgb = rgb_pixels.mean(0)
            # Coverage is contrast relative to the most contrasting pixels, as calibrated.
            full = np.abs(f[i][sel][strongest].mean(0) - bg[i]).max()
            cov = np.zeros((h, w), np.float32)
            cov[sel] = np.clip(s / max(full, 1.0), 0, 1)
            # The soft coverage also extends into the anti-aliased rim just under the threshold.
            cx = float((cov.sum(0) * px).sum() / cov.sum())
            cy = float((cov.sum(1) * px).sum() / cov.sum())
            obj = SceneObject(
                pixels=np.flatnonzero(sel), coverage=cov, centroid=(cx, cy), area=int(cnt), rgb=rgb,
                color_std=float(rgb_pixels.std(0).max()) if len(rgb_pixels) > 1 else 0.0,
            )
            if with_shapes:
                obj.centres = _hypothesis_centres((cx, cy), h)
                obj.shape_iou = _shape_ious(cov, obj.centres, h)
            objects.append(obj)
        out.append(SceneAnalysis(background=bg[i], border_dark=bool(border_dark[i]), objects=objects, stray=stray))
    return out


def _shape_ious(cov: np.ndarray, centres: np.ndarray, size: int) -> np.ndarray:
    """Soft IoU of ``cov`` (H, W) with each of the 3×2 ideal shapes rendered at ``centres``."""
    shapes = np.repeat(np.arange(3), 2)
    sizes = np.tile(np.arange(2), 3)
    cen = centres.reshape(6, 2)
    px = np.arange(size, dtype=np.float32) + 0.5
    ideal = sc.coverage(shapes, sc.EXTENT_ARRAY[sizes] * size, cen, px)  # (6, H, W)
    inter = np.minimum(ideal, cov[None]).sum((1, 2))
    union = np.maximum(ideal, cov[None]).sum((1, 2))
    return (inter / np.maximum(union, 1e-6)).reshape(3, 2)


def scenes_valid(images: np.ndarray, n_objects: "int | Sequence[int] | None" = None) -> np.ndarray:
    """bool (N,): computed validity of 32×32 scenes (see the module docstring)."""
    return np.array([not a.reasons(n_objects) for a in analyse_scenes(images)], dtype=bool)


# ---- corruptions -----------------------------------------------------------------------------
# Deliberately invalid images for measuring validity checks. Each kind is a failure mode seen (or
# feared) in EBM samples: noise, soft blobs, textures, half-drawn objects, multicoloured blobs;
# for faces also the subtler ones of soft samples that a person still calls broken: hair and beard
# (or side hair) of different colours, half-transparent glasses, two faces' features blended into
# one, and a muddy low-contrast rendering.

# Broken faces: drawn by the generator with one defect, or muddied; the computed faces check
# (fit_faces) is what fails them, the validity head was not trained on them.
FACE_DEFECT_KINDS = ("mismatched_hair", "translucent_glasses", "blended_features", "low_contrast")
CORRUPTION_KINDS: dict[str, tuple[str, ...]] = {
    "scenes": ("noise", "blur_blobs", "texture", "half_drawn", "multicolour_blob", "speckles"),
    "faces": ("noise", "blur_blobs", "texture", "half_drawn", "multicolour_blob", "scrambled",
              "noisy_face", "featureless") + FACE_DEFECT_KINDS,
}
# The kinds the faces validity head is trained on (judge training draws its pool from these).
FACE_HEAD_KINDS = CORRUPTION_KINDS["faces"][:8]
# Kinds drawn by re-rendering a face with a defect (they need its attributes, not only its pixels).
_FACE_DEFECTS = ("mismatched_hair", "translucent_glasses", "blended_features")


def _blur(img: np.ndarray, radius: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


def _smooth_field(rng: np.random.Generator, size: int, cells: int, channels: int = 3) -> np.ndarray:
    from PIL import Image

    small = (rng.random((cells, cells, channels)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC)).astype(np.float32)


def _defective_faces(n: int, seed: int, image_size: int, kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Faces re-rendered with one defect each, for the kinds of ``_FACE_DEFECTS`` in ``kinds``:
    {kind: uint8 (N, S, S, 3)} (all N drawn; the round-robin uses the kind's own rows)."""
    from conceptlang.data import faces as fc

    out: dict[str, np.ndarray] = {}
    rng = np.random.default_rng([seed, 8])
    for kind in _FACE_DEFECTS:
        if kind not in kinds:
            continue
        a = fc.sample_face_arrays(n, seed + 20_000 + _FACE_DEFECTS.index(kind))
        if kind == "mismatched_hair":
            # Every face gets hair (not bald) and its beard or side hair in another of the three hair
            # colours (not the bald beard's dark brown, which is close to black and brown hair).
            a.index["hair"][:, 0] = rng.integers(0, 3, n)
            second = (a.index["hair"][:, 0] + rng.integers(1, 3, n)) % 3
            out[kind] = fc.render_faces(a, image_size, defects={"second_hair": second})
        elif kind == "translucent_glasses":
            a.index["eyeglasses"][:, 0] = 0
            out[kind] = fc.render_faces(a, image_size, defects={"glasses_alpha": rng.uniform(0.15, 0.5, n)})
        else:
            # blended_features: the face and the same face with 1-2 of smiling, male, eyeglasses
            # changed, mixed 35-65 %: a half-drawn smile over a closed mouth, a ghost beard, ghost
            # glasses. (Hair colour and age blend into something that still looks like a face: a
            # mid-tone hair colour, faint blush; those are not in the set.)
            b = fc.FaceArrays({k: v.copy() for k, v in a.index.items()}, a.positions, a.nuisance)
            for i in range(n):
                for fam in rng.choice(("smiling", "male", "eyeglasses"), size=int(rng.integers(1, 3)), replace=False):
                    b.index[fam][i, 0] = -1 - a.index[fam][i, 0]  # holds (0) <-> absent (-1)
            t = rng.uniform(0.35, 0.65, (n, 1, 1, 1))
            mix = (1 - t) * fc.render_faces(a, image_size) + t * fc.render_faces(b, image_size)
            out[kind] = np.clip(mix + 0.5, 0, 255).astype(np.uint8)
    return out


def corruptions(domain: str, n: int, seed: int = 0, kinds: tuple[str, ...] | None = None,
                image_size: int = 32) -> tuple[np.ndarray, list[str]]:
    """``n`` corrupted images of ``domain`` (uint8 (N, S, S, 3)) and the kind of each, round-robin."""
    from conceptlang.data import generate

    kinds = kinds or CORRUPTION_KINDS[domain]
    rng = np.random.default_rng([seed, 7])
    real, _ = generate(domain, n, seed=seed + 10_000, image_size=image_size)
    defective = _defective_faces(n, seed, image_size, kinds) if domain == "faces" else {}
    S = image_size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5
    out = np.empty((n, S, S, 3), np.uint8)
    names = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        names.append(kind)
        img = real[i].astype(np.float32)
        bg = img[0, 0].copy()
        if kind == "noise":
            if rng.random() < 0.5:
                img = rng.random((S, S, 3)) * 255
            else:
                img = np.clip(rng.normal(rng.uniform(40, 200), rng.uniform(20, 80), (S, S, 3)), 0, 255)
        elif kind == "blur_blobs":
            img = np.zeros((S, S, 3), np.float32) + (bg if domain == "faces" else 0)
            for _ in range(rng.integers(1, 5)):
                c = rng.uniform(4, S - 4, 2)
                r = rng.uniform(2, S / 4)
                a = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * r * r))[..., None]
                img = img * (1 - a) + a * rng.uniform(0, 255, 3)
        elif kind == "texture":
            if rng.random() < 0.5:
                img = _smooth_field(rng, S, int(rng.integers(3, 9)))
            else:  # stripes / checks of two random colours
                period = rng.uniform(3, 10)
                ang = rng.uniform(0, np.pi)
                wave = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)
                if rng.random() < 0.5:
                    wave = wave * np.sin((xx * np.sin(ang) - yy * np.cos(ang)) * 2 * np.pi / period)
                t = (wave[..., None] > 0).astype(np.float32)
                img = t * rng.uniform(0, 255, 3) + (1 - t) * rng.uniform(0, 255, 3)
        elif kind == "half_drawn":
            # Erase the part of the image on one side of a line through the (first) object's centre.
            ang = rng.uniform(0, 2 * np.pi)
            cx, cy, extent = S / 2, S * 0.56, 0.7 * S
            if domain == "scenes":
                ys, xs = np.nonzero(real[i].max(-1) > FG_THRESHOLD)
                cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
                extent = max(np.ptp(xs), np.ptp(ys)) + 1
            # The cut passes within 15 % of the extent of the centre: 35-65 % of the object is gone.
            side = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang) > rng.uniform(-0.15, 0.15) * extent
            img[side] = bg
        elif kind == "multicolour_blob":
            if domain == "scenes":
                mask = real[i].max(-1).astype(np.float32) / 255.0
                mask = mask / max(mask.max(), 1e-6)
                col = _smooth_field(rng, S, int(rng.integers(6, 12)))
                img = mask[..., None] * col
            else:
                c = np.array([S / 2, S * 0.55]) + rng.normal(0, 1.5, 2)
                a = (((xx - c[0]) / (0.32 * S)) ** 2 + ((yy - c[1]) / (0.37 * S)) ** 2 <= 1)[..., None]
                img = np.where(a, _smooth_field(rng, S, int(rng.integers(2, 6))), bg)
        elif kind == "speckles":
            k = int(rng.integers(6, 20))
            ys, xs = rng.integers(0, S, k), rng.integers(0, S, k)
            img[ys, xs] = rng.uniform(80, 255, (k, 3))
        elif kind == "noisy_face":
            # A face drowned in noise (σ 45-90 of 255): a sampler that has not converged.
            img = img + rng.normal(0, rng.uniform(45, 90), img.shape)
        elif kind == "featureless":
            # The face outline in skin colour with at most one feature-sized dark dot: no face.
            c = np.array([S / 2, S * 0.56]) + rng.normal(0, 1.0, 2)
            a = (((xx - c[0]) / (0.32 * S)) ** 2 + ((yy - c[1]) / (0.37 * S)) ** 2 <= 1)[..., None]
            skin = real[i][int(c[1]), int(c[0])].astype(np.float32)
            img = np.where(a, skin, bg)
            if rng.random() < 0.5:
                d = c + rng.uniform(-6, 6, 2)
                dot = ((xx - d[0]) ** 2 + (yy - d[1]) ** 2 <= rng.uniform(1, 4))[..., None]
                img = np.where(dot, rng.uniform(0, 120, 3), img)
        elif kind in _FACE_DEFECTS:
            img = defective[kind][i].astype(np.float32)
        elif kind == "low_contrast":
            # Muddy: contrast pulled 40-70 % towards the image's mean colour, often softened too
            # (a real face's gain augmentation scales brightness by 0.75-1.1, contrast stays).
            mean = img.reshape(-1, 3).mean(0)
            img = mean + rng.uniform(0.3, 0.6) * (img - mean)
            if rng.random() < 0.5:
                img = _blur(np.clip(img + 0.5, 0, 255).astype(np.uint8), rng.uniform(0.5, 1.2)).astype(np.float32)
        elif kind == "scrambled":
            p = int(rng.choice([4, 8]))
            tiles = img.reshape(S // p, p, S // p, p, 3).transpose(0, 2, 1, 3, 4).reshape(-1, p, p, 3)
            tiles = tiles[rng.permutation(len(tiles))]
            img = tiles.reshape(S // p, S // p, p, p, 3).transpose(0, 2, 1, 3, 4).reshape(S, S, 3)
        else:
            raise ValueError(f"unknown corruption kind {kind!r}")
        if kind in ("blur_blobs",) or (kind == "texture" and rng.random() < 0.3):
            img = _blur(np.clip(img, 0, 255).astype(np.uint8), rng.uniform(0.5, 1.5)).astype(np.float32)
        out[i] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out, names


# ---- faces: the generator fit ------------------------------------------------------------------
# A face passes when the generator explains it: the best-fitting generator face (from the judge's
# reading of its attributes and position, refined: skin tone, hair, each binary attribute, centre,
# scale, blur) leaves no feature drawn part-way, the contrast where the generator puts it, and no
# region painted otherwise (face_reasons).

FIT_LOWPASS = 0.7  # px: Gaussian low-pass of image and render before they are compared
COARSE_LOWPASS = 1.5  # px: the same for the coarse position and scale search
FIT_BLURS = (0.0, 0.5, 0.8, 1.1, 1.5)  # px: blur of the render (sampler softness), chosen per image
COARSE_BLURS = (0.0, 1.0)  # px: the same for the coarse search
FINE_BLURS = tuple(round(0.1 * k, 1) for k in range(21))  # px: the final fit's blur, 0 to 2
FIT_SHIFTS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # px: face-centre search around the judge's reading (y; x: the middle three)
FIT_SCALES = (0.96, 1.0, 1.04)


@functools.lru_cache(maxsize=64)
def _blur_matrix(sigma: float, size: int):
    """(size, size) matrix B with B @ column = the column blurred by a Gaussian of σ px (edge
    pixels repeated beyond the border)."""
    import torch

    r = int(np.ceil(3 * sigma))
    t = np.arange(-r, r + 1)
    k = np.exp(-(t ** 2) / (2 * sigma * sigma))
    k /= k.sum()
    m = np.zeros((size, size))
    for i in range(size):
        for o, w in zip(t, k):
            m[i, min(max(i + o, 0), size - 1)] += w
    return torch.from_numpy(m.astype(np.float32))


@functools.lru_cache(maxsize=256)
def _blur_product(sigmas: tuple[float, ...], size: int):
    """The blur matrix of several Gaussian blurs one after the other (σ ≤ 0 skipped). Sampled
    kernels of small σ are not Gaussian, so a blur then a low-pass is not one Gaussian of
    hypot(σ₁, σ₂): the fit blurs its render exactly as the image was."""
    import torch

    m = torch.eye(size)
    for s in sigmas:
        if s > 0:
            m = _blur_matrix(s, size) @ m
    return m


def _gauss(x, *sigmas: float):
    """Separable Gaussian blurs of a float tensor (M, 3, H, W), one after the other (edges repeated;
    σ ≤ 0: none)."""
    sigmas = tuple(round(float(s), 4) for s in sigmas if s > 0)
    if not sigmas:
        return x
    b = _blur_product(sigmas, x.shape[-1]).T
    shape = x.shape
    y = (x.reshape(-1, shape[-1]) @ b).reshape(shape).transpose(-1, -2)  # rows blurred, transposed
    return (y.reshape(-1, shape[-2]) @ b).reshape(y.shape).transpose(-1, -2)


def _render_t(arrays):
    import torch

    from conceptlang.data import faces as fc

    return torch.from_numpy(fc.render_faces_float(arrays, SIZE)).permute(0, 3, 1, 2)


def _seen(render, blur: float, lowpass: float = FIT_LOWPASS):
    """The render as the image is compared with it: blurred by ``blur``, then low-passed."""
    return _gauss(render, blur, lowpass)


FACE_FAMILIES = ("male", "smiling", "eyeglasses", "young")  # the binary families, as in faces.BINARY


@dataclass
class FaceFit:
    """The best generator face per image and what is left unexplained (see :func:`fit_faces`)."""

    arrays: Any  # conceptlang.data.faces.FaceArrays: the fitted attributes, position, skin, scale
    blur: np.ndarray  # (N,) the render blur that fits best, px
    gain: np.ndarray  # (N,) contrast relative to the generator's (least squares; 1 for real faces)
    opacity: dict[str, np.ndarray]  # family → (N,) weight of the fitted face's feature flipped
    opacity_se: dict[str, np.ndarray]  # family → (N,) its standard error
    residual: np.ndarray  # (N,) largest local colour difference left (RGB distance, 0..255)
    error: np.ndarray  # (N,) rms difference of the best fit, up to gain and offset (per channel, 0..255)


def _with(a, **changes):
    """A copy of FaceArrays ``a`` with index/nuisance/position entries replaced."""
    from conceptlang.data import faces as fc

    index = {k: changes.get(k, v).copy() for k, v in a.index.items()}
    nuisance = {k: changes.get(k, v).copy() for k, v in a.nuisance.items()}
    return fc.FaceArrays(index, changes.get("positions", a.positions).copy(), nuisance)


def _concat(arrays: list):
    from conceptlang.data import faces as fc

    return fc.FaceArrays({k: np.concatenate([a.index[k] for a in arrays]) for k in arrays[0].index},
                         np.concatenate([a.positions for a in arrays]),
                         {k: np.concatenate([a.nuisance[k] for a in arrays]) for k in arrays[0].nuisance})


def _affine_loss(seen, target):
    """Squared difference of ``target`` (N, 3, H, W) and ``seen`` (..., N, 3, H, W) after the best
    gain ≥ 0 (one per image) and colour offset (one per channel): a muddy or tinted face is fitted
    by its structure, and its contrast read afterwards."""
    t = target - target.mean((-1, -2), keepdim=True)
    r = seen - seen.mean((-1, -2), keepdim=True)
    tr = (t * r).sum((-1, -2, -3))
    return (t * t).sum((-1, -2, -3)) - tr.clamp(min=0) ** 2 / (r * r).sum((-1, -2, -3)).clamp(min=1e-6)


def _best(a, x, candidates: list, lowpass: float = FIT_LOWPASS, blurs: tuple[float, ...] = FIT_BLURS):
    """Of the variants ``candidates`` of ``a`` (each a FaceArrays of the same N faces), the one per
    face whose render (at the best of ``blurs``) is closest to the images ``x`` (N, 3, H, W), both
    low-passed by ``lowpass`` px, up to gain and offset (:func:`_affine_loss`). Returns (FaceArrays,
    loss (N,), blur index (N,))."""
    import torch

    n = len(a)
    target = _gauss(x, lowpass)
    renders = _render_t(_concat(candidates)).reshape(len(candidates), n, 3, SIZE, SIZE)
    losses = torch.stack([_affine_loss(_seen(renders.reshape(-1, 3, SIZE, SIZE), b, lowpass).reshape(renders.shape), target)
                          for b in blurs])  # (B, C, N)
    loss, blur = losses.min(0)  # (C, N)
    best = loss.argmin(0).numpy()  # (N,)
    rows = np.arange(n)
    out = _concat(candidates).take(best * n + rows)
    return out, loss.min(0).values.numpy(), blur.numpy()[best, rows]


def fit_faces(images: np.ndarray, hair: np.ndarray, binary: dict[str, np.ndarray], position: np.ndarray,
              chunk: int = 64) -> FaceFit:
    """Fit the faces generator to uint8 (N, 32, 32, 3) ``images``, starting from a reading of their
    attributes (the judge's heads: ``hair`` (N,) index into faces.HAIR, ``binary`` family → (N,)
    bool, ``position`` (N, 2) face centre in [0, 1]).

    Background: the palette colour nearest the median border pixel. Then coordinate descent on the
    squared difference between the image and the render, both low-passed (the render also blurred
    by the best of FIT_BLURS): skin tone; face centre and scale together (FIT_SHIFTS × FIT_SCALES
    around the reading under the wider COARSE_LOWPASS, then ±0.25 px, ±0.02); skin, hair and each
    binary attribute; finer centre and scale; the attributes again; finest centre and scale; the
    render blur from FINE_BLURS. Last, one least-squares fit per image of the image itself to
    gain × render + a colour offset + a weight per binary attribute on (its render with that
    attribute flipped − the render): ``gain`` measures contrast (1 for a real face), ``opacity`` a
    feature drawn part-way (0 for a real face; 0.3 for glasses at 30 % opacity) with its standard
    error, and ``residual`` is the largest 3×3 mean of what is left (low-passed), as an RGB distance.
    """
    from conceptlang.data import faces as fc

    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[1:] != (SIZE, SIZE, 3):
        raise ValueError(f"fit_faces needs (N, {SIZE}, {SIZE}, 3) images, got {imgs.shape}")
    parts = []
    for s in range(0, len(imgs), chunk):
        sl = slice(s, s + chunk)
        parts.append(_fit_chunk(imgs[sl], np.asarray(hair)[sl], {f: np.asarray(binary[f])[sl] for f in FACE_FAMILIES},
                                np.asarray(position)[sl]))
    if not parts:
        empty = np.zeros(0, np.float32)
        return FaceFit(fc.sample_face_arrays(0, 0), empty, empty, {f: empty for f in FACE_FAMILIES},
                       {f: empty for f in FACE_FAMILIES}, empty, empty)
    return FaceFit(_concat([p.arrays for p in parts]), *(np.concatenate([getattr(p, k) for p in parts])
                                                         for k in ("blur", "gain")),
                   {f: np.concatenate([p.opacity[f] for p in parts]) for f in FACE_FAMILIES},
                   {f: np.concatenate([p.opacity_se[f] for p in parts]) for f in FACE_FAMILIES},
                   *(np.concatenate([getattr(p, k) for p in parts]) for k in ("residual", "error")))


def _fit_chunk(imgs, hair, binary, position) -> FaceFit:
    import torch
    import torch.nn.functional as F

    from conceptlang.data import faces as fc

    n = len(imgs)
    x = torch.from_numpy(imgs.astype(np.float32)).permute(0, 3, 1, 2)
    target = _gauss(x, FIT_LOWPASS)
    f = imgs.astype(np.float32)
    border = np.concatenate([f[:, 0], f[:, -1], f[:, 1:-1, 0], f[:, 1:-1, -1]], axis=1)
    bg = np.sqrt(((np.median(border, axis=1)[:, None] - fc.BACKGROUND_RGB[None]) ** 2).sum(-1)).argmin(1)
    index = {"hair": np.asarray(hair, np.int64).reshape(n, 1)}
    for fam in FACE_FAMILIES:
        index[fam] = np.where(np.asarray(binary[fam], bool), 0, -1).astype(np.int64).reshape(n, 1)
    pos = np.clip(np.asarray(position, np.float32).reshape(n, 1, 2), 0.25, 0.75)
    a = fc.FaceArrays(index, pos, {"skin": np.zeros(n, np.int64), "background": bg.astype(np.int64),
                                   "scale": np.ones(n, np.float32)})

    def attributes(a):
        a, _, _ = _best(a, x, [_with(a, skin=np.full(n, k)) for k in range(len(fc.SKIN_RGB))])
        a, _, _ = _best(a, x, [_with(a, hair=np.full((n, 1), k)) for k in range(len(fc.HAIR))])
        for fam in FACE_FAMILIES:  # with the skin tone: a lighter skin can stand in for faint glasses
            a = _best(a, x, [_with(a, skin=np.full(n, k), **{fam: np.full((n, 1), v)})
                             for v in (0, -1) for k in range(len(fc.SKIN_RGB))])[0]
        return a

    # The judge's reading of the attributes is close on real faces: skin tone first, then position
    # and scale, then each attribute again, then finer. Scale and position trade off (a larger face,
    # higher up, covers nearly the same pixels), so they are searched together, coarse to fine (a
    # wider low-pass smooths the loss for the coarse steps).
    def geometry(a, scales, dys, dxs, lowpass=FIT_LOWPASS, blurs=FIT_BLURS, relative=True):
        return _best(a, x, [_with(a, scale=(a.nuisance["scale"] * relative + ds).astype(np.float32),
                                  positions=a.positions + np.array([dx, dy], np.float32) / SIZE)
                            for ds in scales for dy in dys for dx in dxs], lowpass, blurs)[0]

    a = _best(a, x, [_with(a, skin=np.full(n, k)) for k in range(len(fc.SKIN_RGB))], COARSE_LOWPASS, COARSE_BLURS)[0]
    a = geometry(a, FIT_SCALES, FIT_SHIFTS, FIT_SHIFTS[1:-1], COARSE_LOWPASS, COARSE_BLURS, relative=False)
    a = geometry(a, (-0.02, 0.0, 0.02), (-0.25, 0.0, 0.25), (-0.25, 0.0, 0.25), (COARSE_LOWPASS + FIT_LOWPASS) / 2,
                 COARSE_BLURS)
    a = attributes(a)
    a = geometry(a, (-0.01, 0.0, 0.01), (-0.125, 0.0, 0.125), (-0.125, 0.0, 0.125))
    a = attributes(a)
    # Scale and height trade off closely: two rounds of each fine step (one round left a real face
    # 0.3 px high and 1 % large, its glasses read as drawn part-way).
    for _ in range(2):
        a = geometry(a, (-0.01, 0.0, 0.01), (-0.125, 0.0, 0.125), (-0.125, 0.0, 0.125))
    for _ in range(2):
        a = geometry(a, (-0.005, 0.0, 0.005), (-0.0625, 0.0, 0.0625), (-0.0625, 0.0, 0.0625))
    # The blur, finer: a thin line (the glasses) blurred more or less than the image reads as drawn
    # part-way.
    render = _render_t(a)
    losses = torch.stack([_affine_loss(_seen(render, b), target) for b in FINE_BLURS])
    loss, blur_i = losses.min(0)
    loss = loss.numpy()
    blur = np.asarray(FINE_BLURS, np.float32)[blur_i.numpy()]

    # Least squares per image, on the image itself (its noise independent per pixel): image ≈ gain ·
    # render + offset (per channel) + Σ_f opacity_f · (render with f flipped − render), the renders
    # blurred as fitted. Standard errors from the residual variance.
    renders = _render_t(_concat([a] + [_with(a, **{fam: -1 - a.index[fam]}) for fam in FACE_FAMILIES]))
    for b in np.unique(blur):
        rows = np.flatnonzero(np.tile(blur, 1 + len(FACE_FAMILIES)) == b)
        renders[rows] = _gauss(renders[rows], float(b))
    renders = renders.reshape(1 + len(FACE_FAMILIES), n, 3, SIZE, SIZE)
    base = renders[0]
    cols = [base] + [torch.zeros_like(base) for _ in range(3)]
    for c in range(3):
        cols[1 + c][:, c] = 1.0
    cols += [renders[1 + k] - base for k in range(len(FACE_FAMILIES))]
    design = torch.stack([c.reshape(n, -1) for c in cols], dim=2).double()  # (N, P, K)
    rhs = x.reshape(n, -1, 1).double()
    gram = design.transpose(1, 2) @ design
    # float64 and a light damping: a column of zeros (a feature nothing shows) gets weight 0.
    gram = gram + 1e-9 * torch.diag_embed(gram.diagonal(dim1=1, dim2=2)) + 1e-6 * torch.eye(gram.shape[-1], dtype=gram.dtype)
    inv = torch.linalg.inv(gram)
    coef = inv @ (design.transpose(1, 2) @ rhs)  # (N, K, 1)
    left = rhs - design @ coef
    var = left.pow(2).sum((1, 2)) / (design.shape[1] - design.shape[2])
    se = (var[:, None] * inv.diagonal(dim1=1, dim2=2)).sqrt().numpy()
    local = F.avg_pool2d(_gauss(left.float().reshape(n, 3, SIZE, SIZE), FIT_LOWPASS), 3, stride=1)
    residual = local.pow(2).sum(1).sqrt().flatten(1).max(1).values.numpy()
    coef = coef[:, :, 0].numpy()
    return FaceFit(a, blur, coef[:, 0].astype(np.float32),
                   {fam: coef[:, 4 + k].astype(np.float32) for k, fam in enumerate(FACE_FAMILIES)},
                   {fam: se[:, 4 + k].astype(np.float32) for k, fam in enumerate(FACE_FAMILIES)},
                   residual.astype(np.float32), np.sqrt(loss / (3 * SIZE * SIZE)).astype(np.float32))


MIN_FACE_GAIN = 0.75  # contrast against the generator's below this: muddy
# A feature drawn at least this far towards its other value (a weight > 0; below 0 the image has
# more of the fitted value than the generator draws, a bolder mouth or darker frames) ...
MIN_OPACITY = {"eyeglasses": 0.12, "smiling": 0.30, "male": 0.20, "young": 0.30}
OPACITY_Z = 4.0  # ... by this many standard errors, is drawn part-way
MAX_FACE_RESIDUAL = 50.0  # largest 3×3-mean colour difference (RGB distance) the fit may leave


def face_reasons(fit: FaceFit) -> list[list[str]]:
    """Why each fitted image is not a generator face (empty when it is), from :func:`fit_faces`."""
    out = []
    for i in range(len(fit.gain)):
        r = []
        if fit.gain[i] < MIN_FACE_GAIN:
            r.append(f"low contrast ({fit.gain[i]:.2f} of a generator face's)")
        for fam in FACE_FAMILIES:
            op, se = float(fit.opacity[fam][i]), float(fit.opacity_se[fam][i])
            if op >= MIN_OPACITY[fam] and op >= OPACITY_Z * se:
                shown = "absent" if fit.arrays.index[fam][i, 0] < 0 else "present"
                r.append(f"{fam} half-drawn ({fam} {shown}, {op:.2f} of the way to the other)")
        if fit.residual[i] > MAX_FACE_RESIDUAL:
            r.append(f"a region no generator face draws (colour off by {fit.residual[i]:.0f})")
        out.append(r)
    return out


def faces_reasons(images: np.ndarray, heads: dict[str, np.ndarray]) -> list[list[str]]:
    """Why each uint8 (N, 32, 32, 3) face image is invalid (empty when valid), given the faces
    judge's head outputs ``heads`` (logits: ``valid``, ``hair``, one per binary family; ``position``):
    the validity head, then the generator fit started from the heads' reading (:func:`fit_faces`,
    :func:`face_reasons`)."""
    fit = fit_faces(images, heads["hair"].argmax(1), {f: heads[f][:, 0] > 0 for f in FACE_FAMILIES}, heads["position"])
    out = face_reasons(fit)
    for r, ok in zip(out, heads["valid"][:, 0] > 0):
        if not ok:
            r.insert(0, "the validity head does not see a cartoon face")
    return out
