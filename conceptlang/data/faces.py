"""The ``faces`` domain: procedural cartoon faces labelled with CelebA attribute names.

Families (see :data:`FACES`):

* ``hair`` — one exclusive family with values ``black_hair``, ``blond_hair``, ``brown_hair``,
  ``bald`` (a person has exactly one of them), drawn uniformly.
* ``male``, ``smiling``, ``eyeglasses``, ``young`` — binary attributes, each a one-value family
  (``Family("male", values=("male",))``): the attribute holds or it does not; ``~male`` is the
  language's negation. Each is drawn independently with probability 1/2.

Labels use the shared format: every attribute name as a bool, bare (``"male"``) and qualified
(``"male.male"``, ``"hair.black_hair"``), plus ``objects``: one dict for the face with its centre
``x``, ``y`` and every attribute. So ``(male & smiling) | ~black_hair`` evaluates on any label dict.

How each attribute is drawn (bold enough to read at 32×32):

* hair colour: a cap of black / golden / brown hair over the top of the head; ``bald``: no hair,
  the skin of the head shows;
* ``male``: a beard along the jaw and chin (hair-coloured; dark brown when bald) and short hair;
  not male: no beard, and (unless bald) long hair falling beside the face to the chin;
* ``smiling``: an open, upturned half-disc mouth; not smiling: a flat closed line;
* ``eyeglasses``: dark square frames around both eyes with a bridge and arms;
* ``young``: rosy cheeks and dark eyebrows; not young (old): two forehead wrinkle lines, thick white
  eyebrows and no blush.

Nuisance factors vary independently of the labels: skin tone (3), background colour (3), the face's
position (± 1/32 of the canvas) and scale (± 4 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conceptlang.data.domain import Domain, Family
from conceptlang.errors import DataError

HAIR: tuple[str, ...] = ("black_hair", "blond_hair", "brown_hair", "bald")
BINARY: tuple[str, ...] = ("male", "smiling", "eyeglasses", "young")
ATTRIBUTES: tuple[str, ...] = ("male", "smiling", "black_hair", "blond_hair", "brown_hair", "eyeglasses", "bald", "young")

HAIR_RGB = np.array([(28, 22, 22), (236, 192, 52), (112, 60, 22), (0, 0, 0)], dtype=np.float32)
BALD_BEARD_RGB = np.array((78, 52, 34), dtype=np.float32)
SKIN_RGB = np.array([(248, 214, 184), (222, 172, 128), (176, 118, 82)], dtype=np.float32)
BACKGROUND_RGB = np.array([(176, 206, 232), (200, 226, 186), (214, 200, 230)], dtype=np.float32)
EYE_RGB = np.array((30, 24, 36), dtype=np.float32)
BROW_YOUNG_RGB = np.array((58, 38, 28), dtype=np.float32)
BROW_OLD_RGB = np.array((236, 236, 236), dtype=np.float32)
BLUSH_RGB = np.array((240, 104, 124), dtype=np.float32)
SMILE_RGB = np.array((176, 30, 52), dtype=np.float32)
FLAT_MOUTH_RGB = np.array((120, 40, 46), dtype=np.float32)
GLASSES_RGB = np.array((16, 16, 20), dtype=np.float32)

# Face geometry as fractions of the canvas (before the per-image scale jitter).
FACE_CENTRE = (0.5, 0.56)
FACE_RADII = (0.32, 0.37)
JITTER_POS = 1 / 32
JITTER_SCALE = 0.04
HAIRLINE = 0.78  # the hair cap reaches down to 0.78 face-radii above the centre
WRINKLE_ROWS = (-0.55, -0.67)  # forehead lines of old faces, in face radii from the centre

FACES = Domain(
    name="faces",
    image_size=32,
    channels=3,
    families=(
        Family("hair", "discrete", values=HAIR, exclusive=True,
               description="hair colour, or bald (exactly one holds)"),
        Family("male", "discrete", values=("male",), description="beard and short hair"),
        Family("smiling", "discrete", values=("smiling",), description="open upturned mouth"),
        Family("eyeglasses", "discrete", values=("eyeglasses",), description="dark square frames"),
        Family("young", "discrete", values=("young",),
               description="rosy cheeks, dark brows (old: wrinkles, white brows)"),
    ),
    description="Procedural cartoon faces with CelebA attribute names (hair colour/bald exclusive; "
    "male, smiling, eyeglasses, young binary).",
)

SPLITS: dict[str, str] = {
    "train": "all attributes drawn independently (hair uniform over 4 values, binaries p = 1/2)",
}


@dataclass
class FaceArrays:
    """Labels of a batch of faces as arrays (fast path for training).

    ``index[family]`` is int64 (N, 1): for ``hair`` the index into ``HAIR``; for a binary family
    0 when the attribute holds and **-1 when it does not** (no value of that family holds).
    ``attributes[name]`` is bool (N,) for every CelebA name in :data:`ATTRIBUTES`.
    ``positions`` is float32 (N, 1, 2): the face centre (x, y). ``nuisance`` holds the skin tone,
    background index and scale, which the labels do not name.
    """

    index: dict[str, np.ndarray]
    positions: np.ndarray
    nuisance: dict[str, np.ndarray]

    @property
    def attributes(self) -> dict[str, np.ndarray]:
        out = {h: self.index["hair"][:, 0] == i for i, h in enumerate(HAIR)}
        out.update({b: self.index[b][:, 0] == 0 for b in BINARY})
        return {a: out[a] for a in ATTRIBUTES}

    @property
    def n_objects(self) -> int:
        return 1

    def __len__(self) -> int:
        return self.positions.shape[0]

    def take(self, sl: slice | np.ndarray) -> "FaceArrays":
        """The faces selected by ``sl`` (a slice or index array)."""
        return FaceArrays({k: v[sl] for k, v in self.index.items()}, self.positions[sl],
                          {k: v[sl] for k, v in self.nuisance.items()})

    def to_dicts(self) -> list[dict]:
        attrs = self.attributes
        out = []
        for i in range(len(self)):
            flags = {a: bool(attrs[a][i]) for a in ATTRIBUTES}
            out.append(face_labels(flags, float(self.positions[i, 0, 0]), float(self.positions[i, 0, 1])))
        return out


def face_labels(flags: dict[str, bool], x: float = 0.5, y: float = FACE_CENTRE[1]) -> dict:
    """The shared labels dict for one face with attribute booleans ``flags`` (all of ATTRIBUTES)."""
    labels: dict = {}
    for h in HAIR:
        labels[f"hair.{h}"] = labels[h] = bool(flags[h])
    for b in BINARY:
        labels[f"{b}.{b}"] = labels[b] = bool(flags[b])
    obj = {"x": round(x, 6), "y": round(y, 6)}
    obj["hair"] = next((h for h in HAIR if flags[h]), None)
    obj.update({a: bool(flags[a]) for a in ATTRIBUTES})
    labels["objects"] = [obj]
    return labels


def sample_face_arrays(n: int, seed: int, split: str = "train") -> FaceArrays:
    """Draw the attributes and nuisance factors of ``n`` faces deterministically from ``seed``."""
    if split not in SPLITS:
        raise DataError(f"faces has no split {split!r} (splits: {', '.join(SPLITS)})")
    if n < 0:
        raise DataError(f"number of faces must be >= 0, got {n}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 100 + list(SPLITS).index(split)])
    hair = rng.integers(0, len(HAIR), size=(n, 1))
    binary = rng.random((n, len(BINARY))) < 0.5
    index = {"hair": hair}
    for j, b in enumerate(BINARY):
        index[b] = np.where(binary[:, j : j + 1], 0, -1).astype(np.int64)
    centre = np.array(FACE_CENTRE, dtype=np.float32) + JITTER_POS * (2 * rng.random((n, 1, 2)) - 1)
    nuisance = {
        "skin": rng.integers(0, len(SKIN_RGB), size=n),
        "background": rng.integers(0, len(BACKGROUND_RGB), size=n),
        "scale": (1 + JITTER_SCALE * (2 * rng.random(n) - 1)).astype(np.float32),
    }
    return FaceArrays(index=index, positions=centre.astype(np.float32), nuisance=nuisance)


# ---- rendering -------------------------------------------------------------------------------
# Shapes are signed distance fields in pixels over the canvas, evaluated for a chunk of faces at
# once; coverage = clip(0.5 - sdf, 0, 1) gives a one-pixel anti-aliased edge.


def _ellipse(x, y, rx, ry):
    # Scaled-circle approximation of the ellipse SDF: exact on the axes, good to a fraction of a
    # pixel elsewhere at these eccentricities, which is all anti-aliasing needs.
    return (np.sqrt((x / rx) ** 2 + (y / ry) ** 2) - 1) * np.minimum(rx, ry)


def _box(x, y, hx, hy):
    return np.maximum(np.abs(x) - hx, np.abs(y) - hy)


def _cover(sdf):
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _paint(canvas, cov, rgb, on=None, alpha=1.0):
    """Alpha-composite colour ``rgb`` ((3,) or (b, 3)) over ``canvas`` (b, S, S, 3) with coverage."""
    rgb = np.broadcast_to(np.asarray(rgb, dtype=np.float32), (canvas.shape[0], 3))
    if on is not None:  # paint only the faces that have the feature (about half): saves the work
        idx = np.flatnonzero(on)
        if idx.size == 0:
            return
        sub = canvas[idx]
        a = cov[idx] * np.float32(alpha)
        sub += a[..., None] * (rgb[idx, None, None, :] - sub)
        canvas[idx] = sub
        return
    canvas += (cov * np.float32(alpha))[..., None] * (rgb[:, None, None, :] - canvas)


def render_faces(arrays: FaceArrays, image_size: int = 32, chunk: int = 256,
                 defects: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Render uint8 images (N, S, S, 3) for the attributes in ``arrays``.

    ``defects`` draws broken faces for the validity corruption set (never data): per face,
    ``"second_hair"`` (int (N,), −1 for none) paints the beard (male) or the long side hair (not
    male) in that index of ``HAIR_RGB`` (3: the bald beard colour) instead of the face's own
    hair colour, and ``"glasses_alpha"`` (float (N,)) draws the eyeglasses half-transparent.
    """
    return np.clip(render_faces_float(arrays, image_size, chunk, defects) + 0.5, 0, 255).astype(np.uint8)


def render_faces_float(arrays: FaceArrays, image_size: int = 32, chunk: int = 256,
                       defects: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """:func:`render_faces` before rounding: float32 (N, S, S, 3) in 0..255 (the validity check fits
    these to an image; face positions and scales are continuous)."""
    if image_size < 8:
        raise DataError(f"image_size must be at least 8, got {image_size}")
    n, S = len(arrays), image_size
    out = np.empty((n, S, S, 3), dtype=np.float32)
    px = np.arange(S, dtype=np.float32) + 0.5
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        out[sl] = _render_chunk(arrays, sl, S, px, defects)
    return out


# The colour of each hair index's beard (HAIR_RGB, the bald beard for "bald").
_BEARD_RGB = np.concatenate([HAIR_RGB[:3], BALD_BEARD_RGB[None]])


def _render_chunk(a: FaceArrays, sl: slice, S: int, px: np.ndarray,
                  defects: dict[str, np.ndarray] | None = None) -> np.ndarray:
    hair = a.index["hair"][sl, 0]
    male, smiling, glasses, young = (a.index[b][sl, 0] == 0 for b in BINARY)
    bald = hair == HAIR.index("bald")
    b = hair.shape[0]
    scale = a.nuisance["scale"][sl]
    rx = (FACE_RADII[0] * S * scale)[:, None, None]  # (b, 1, 1) pixels
    ry = (FACE_RADII[1] * S * scale)[:, None, None]
    cx = a.positions[sl, 0, 0][:, None, None] * S
    cy = a.positions[sl, 0, 1][:, None, None] * S
    x = np.broadcast_to(px[None, None, :] - cx, (b, S, S))  # (b, S, S) pixels from the face centre
    y = np.broadcast_to(px[None, :, None] - cy, (b, S, S))
    # Feature sizes in pixels stay legible at 32 px: thin lines are at least ~1 px wide.
    unit = S / 32.0

    skin = SKIN_RGB[a.nuisance["skin"][sl]]  # (b, 3)
    hair_rgb = HAIR_RGB[hair]
    beard_rgb = np.where(bald[:, None], BALD_BEARD_RGB[None, :], hair_rgb)
    side_rgb = hair_rgb
    glasses_alpha = np.ones(b, dtype=np.float32)
    if defects is not None:
        if "second_hair" in defects:
            second = np.asarray(defects["second_hair"])[sl]
            other = _BEARD_RGB[np.clip(second, 0, 3)]
            beard_rgb = np.where((second >= 0)[:, None], other, beard_rgb)
            side_rgb = np.where((second >= 0)[:, None], other, hair_rgb)
        if "glasses_alpha" in defects:
            glasses_alpha = np.asarray(defects["glasses_alpha"], dtype=np.float32)[sl]
    canvas = np.broadcast_to(BACKGROUND_RGB[a.nuisance["background"][sl]][:, None, None, :], (b, S, S, 3)).copy()

    # Long hair behind the face (not male, not bald): rounded top + straight sides to below the chin.
    long_top = _ellipse(x, y + 0.10 * ry, 1.26 * rx, 1.06 * ry)
    long_sides = _box(x, y - 0.45 * ry, 1.26 * rx, 0.55 * ry)
    _paint(canvas, _cover(np.minimum(long_top, long_sides)), side_rgb, on=~male & ~bald)

    face = _ellipse(x, y, rx, ry)
    _paint(canvas, _cover(face), skin)

    # Hair cap over the top of the head down to the hairline (everyone but the bald).
    cap = np.maximum(_ellipse(x, y + 0.02 * ry, 1.08 * rx, 1.08 * ry), y + HAIRLINE * ry)
    _paint(canvas, _cover(cap), hair_rgb, on=~bald)

    # Beard (male): chin below the mouth and the jaw on both sides, inside the face outline.
    jaw = np.minimum(0.66 * ry - y, np.maximum(0.70 * rx - np.abs(x), -0.02 * ry - y))
    beard = np.maximum(_ellipse(x, y, 1.03 * rx, 1.03 * ry), jaw)
    _paint(canvas, _cover(beard), beard_rgb, on=male)

    # Old: two forehead wrinkles, darker skin.
    for wy in WRINKLE_ROWS:
        _paint(canvas, _cover(_box(x, y - wy * ry, 0.40 * rx, 0.5 * unit)), skin * 0.5, on=~young)
    # Young: rosy cheeks.
    for sx in (-1, 1):
        _paint(canvas, _cover(_ellipse(x - sx * 0.55 * rx, y - 0.22 * ry, 0.17 * rx, 0.17 * rx)),
               BLUSH_RGB, on=young, alpha=0.8)

    eye_y = -0.08
    for sx in (-1, 1):
        ex = x - sx * 0.38 * rx
        _paint(canvas, _cover(_ellipse(ex, y - eye_y * ry, 0.13 * rx, 0.13 * rx)), EYE_RGB)
        brow_h = np.where(young, np.float32(0.55), np.float32(0.95))[:, None, None] * np.float32(unit)
        brow = _box(ex, y + 0.40 * ry, 0.22 * rx, brow_h)
        _paint(canvas, _cover(brow), np.where(young[:, None], BROW_YOUNG_RGB, BROW_OLD_RGB))

    # Mouth: open upturned half-disc (smiling) or a flat closed line.
    smile = np.maximum(_ellipse(x, y - 0.36 * ry, 0.30 * rx, 0.30 * rx), 0.36 * ry - y)
    _paint(canvas, _cover(smile), SMILE_RGB, on=smiling)
    flat = _box(x, y - 0.46 * ry, 0.25 * rx, 0.5 * unit)
    _paint(canvas, _cover(flat), FLAT_MOUTH_RGB, on=~smiling)

    # Eyeglasses: square rings around the eyes, a bridge and arms to the face's edge.
    half_t = 0.5 * unit
    ring_h = 0.25 * rx
    frames = np.minimum(
        np.abs(_box(x - 0.38 * rx, y - eye_y * ry, ring_h, ring_h)) - half_t,
        np.abs(_box(x + 0.38 * rx, y - eye_y * ry, ring_h, ring_h)) - half_t,
    )
    bar = _box(x, y - (eye_y * ry - ring_h * 0.6), 0.98 * rx, half_t)  # bridge + arms, one bar
    bar = np.maximum(bar, -(np.minimum(
        _box(x - 0.38 * rx, y - eye_y * ry, ring_h, ring_h),
        _box(x + 0.38 * rx, y - eye_y * ry, ring_h, ring_h))))  # not across the lenses
    _paint(canvas, _cover(np.minimum(frames, bar)) * glasses_alpha[:, None, None], GLASSES_RGB, on=glasses)

    return np.clip(canvas, 0, 255)


def generate_faces(n: int, seed: int, split: str = "train", image_size: int | None = None):
    arrays = sample_face_arrays(n, seed, split)
    return render_faces(arrays, image_size or FACES.image_size), arrays


generate_arrays = generate_faces  # the name conceptlang.data.generate dispatches to
