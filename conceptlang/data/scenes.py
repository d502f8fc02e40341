"""The ``scenes`` domain: one or two flat-coloured shapes on a black background.

Geometry is defined in fractions of the canvas, so the same seed gives the same scene at any
resolution. Every shape fits a square "extent" box of side ``d`` (the size family): a circle of
diameter ``d``, a square of side ``0.9 d``, an upward equilateral triangle of height ``d``. At 32×32
``small`` is 9 px across and ``large`` 15 px. The labelled position ``(x, y)`` of an object is the
centre of that box, measured from the top-left in [0, 1]; objects always lie fully inside the canvas
with at least one 32nd of the canvas to spare.

Rendering is vectorised numpy: each object's edge is anti-aliased by *analytic coverage*: a pixel's
value is ``clip(0.5 − sdf, 0, 1)`` of the object colour, where ``sdf`` is the signed distance (in
pixels) from the pixel centre to the shape's boundary. This is exact for straight edges and
circles at a pixel's scale and costs one pass over the canvas per object.

Splits (see :data:`SPLITS`):

* ``train``: one object; every shape × colour × size combination except :data:`HELDOUT_COMBINATIONS`.
* ``heldout``: one object, only the held-out combinations (generalisation to unseen combinations).
* ``continual1``: square, purple, large; only the position varies (continual-learning set 1).
* ``continual2``: purple, large; shape and position vary (set 2).
* ``continual3``: square, large; colour and position vary (set 3).
* ``two_objects``: two non-overlapping small objects, each a training combination (object-level
  composition; two large objects do not fit side by side on the canvas).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conceptlang.data.domain import Domain, Family
from conceptlang.errors import DataError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "cyan")
SIZES: tuple[str, ...] = ("small", "large")

# RGB of each colour value: saturated and far apart in RGB, so a pixel's hue names its colour.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 35, 35),
    "green": (35, 200, 50),
    "blue": (45, 80, 245),
    "yellow": (240, 220, 40),
    "purple": (165, 50, 225),
    "cyan": (40, 215, 225),
}
PALETTE_ARRAY = np.array([PALETTE[c] for c in COLORS], dtype=np.float32)  # (6, 3)

# Extent (side of the box the shape fits) as a fraction of the canvas: 9/32 and 15/32.
SIZE_EXTENT: dict[str, float] = {"small": 9 / 32, "large": 15 / 32}
EXTENT_ARRAY = np.array([SIZE_EXTENT[s] for s in SIZES], dtype=np.float32)
MARGIN = 1 / 32  # free canvas kept between any object and the border (fraction of the canvas)
MIN_GAP = 2 / 32  # free canvas kept between the boxes of two objects
SQUARE_SIDE = 0.9  # square side / extent: a 0.9d square looks as big as a d circle
TRIANGLE_HEIGHT = 1.0  # triangle height / extent (side = 2h/√3 ≈ 1.155 d)

# Held out of ``train``: every shape, colour and size stays seen on its own and in every pair with
# the others' other values, but these four triples never appear (see docs/data.md).
HELDOUT_COMBINATIONS: tuple[tuple[str, str, str], ...] = (
    ("circle", "blue", "large"),
    ("square", "red", "small"),
    ("triangle", "green", "small"),
    ("triangle", "yellow", "large"),
)

CONTINUAL_FIXED = {"shape": "square", "color": "purple", "size": "large"}

SPLITS: dict[str, str] = {
    "train": "one object, every shape×colour×size combination except HELDOUT_COMBINATIONS",
    "heldout": "one object, only HELDOUT_COMBINATIONS",
    "continual1": "square, purple, large; position varies",
    "continual2": "purple, large; shape and position vary",
    "continual3": "square, large; colour and position vary",
    "two_objects": "two non-overlapping small objects, each a training combination",
}

SCENES = Domain(
    name="scenes",
    image_size=32,
    channels=3,
    families=(
        Family("shape", "discrete", values=SHAPES, description="outline of an object"),
        Family("color", "discrete", values=COLORS, description="flat fill colour of an object"),
        Family(
            "size",
            "discrete",
            values=SIZES,
            description="extent of an object: small 9/32, large 15/32 of the canvas",
        ),
        Family(
            "position",
            "continuous",
            params=("x", "y"),
            ranges=((0.0, 1.0), (0.0, 1.0)),
            description="centre of an object from the top-left; position(x, y) holds if some "
            "object's centre is within 0.1 of (x, y)",
        ),
    ),
    description="One or two flat-coloured shapes (circle, square, triangle) on a black background.",
)

DISCRETE_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shape", SHAPES),
    ("color", COLORS),
    ("size", SIZES),
)


@dataclass
class SceneArrays:
    """Labels of a batch of scenes as integer/float arrays (fast path for training).

    ``index[family]`` is int64 (N, K): the value index into the family's ``values`` for each of the
    K objects (K = 1, or 2 for ``two_objects``); ``positions`` is float32 (N, K, 2) holding (x, y).
    """

    index: dict[str, np.ndarray]
    positions: np.ndarray

    @property
    def n_objects(self) -> int:
        return self.positions.shape[1]

    def __len__(self) -> int:
        return self.positions.shape[0]

    def to_dicts(self) -> list[dict]:
        return [scene_labels(self, i) for i in range(len(self))]

    def take(self, sl: slice | np.ndarray) -> "SceneArrays":
        """The scenes selected by ``sl`` (a slice or index array)."""
        return SceneArrays({k: v[sl] for k, v in self.index.items()}, self.positions[sl])


def scene_labels(arrays: SceneArrays, i: int) -> dict:
    """The shared labels dict of scene ``i``: qualified + bare booleans, plus ``objects``."""
    objects = []
    for k in range(arrays.n_objects):
        obj = {
            "x": round(float(arrays.positions[i, k, 0]), 6),
            "y": round(float(arrays.positions[i, k, 1]), 6),
        }
        for fam, values in DISCRETE_FAMILIES:
            obj[fam] = values[int(arrays.index[fam][i, k])]
        objects.append(obj)
    labels: dict = {}
    for fam, values in DISCRETE_FAMILIES:
        present = {o[fam] for o in objects}
        for v in values:
            labels[f"{fam}.{v}"] = v in present
            labels[v] = v in present
    labels["objects"] = objects
    return labels


def _allowed_combinations(split: str) -> np.ndarray:
    """(M, 3) int array of the (shape, colour, size) index triples the split draws from."""
    held = {(SHAPES.index(s), COLORS.index(c), SIZES.index(z)) for s, c, z in HELDOUT_COMBINATIONS}
    allc = [(s, c, z) for s in range(3) for c in range(len(COLORS)) for z in range(2)]
    fs, fc, fz = (
        SHAPES.index(CONTINUAL_FIXED["shape"]),
        COLORS.index(CONTINUAL_FIXED["color"]),
        SIZES.index(CONTINUAL_FIXED["size"]),
    )
    if split == "train":
        combos = [t for t in allc if t not in held]
    elif split == "two_objects":
        # Two large objects (15/32 each plus margins) cannot both fit a canvas side, so both are small.
        combos = [t for t in allc if t not in held and t[2] == SIZES.index("small")]
    elif split == "heldout":
        combos = sorted(held)
    elif split == "continual1":
        combos = [(fs, fc, fz)]
    elif split == "continual2":
        combos = [(s, fc, fz) for s in range(3)]
    elif split == "continual3":
        combos = [(fs, c, fz) for c in range(len(COLORS))]
    else:
        raise DataError(f"scenes has no split {split!r} (splits: {', '.join(SPLITS)})")
    return np.array(combos, dtype=np.int64)


def half_extent(shape_idx: np.ndarray, extent: np.ndarray) -> np.ndarray:
    # Every shape fits its d×d box; the triangle's base (side ≈ 1.155 d) is wider than d, so its
    # horizontal half-width is larger. Return (half-width, half-height) as (..., 2).
    hw = np.where(shape_idx == 2, TRIANGLE_HEIGHT * extent / np.sqrt(3.0), extent / 2)
    hw = np.where(shape_idx == 1, SQUARE_SIDE * extent / 2, hw)
    hh = np.where(shape_idx == 1, SQUARE_SIDE * extent / 2, extent / 2)
    hh = np.where(shape_idx == 2, TRIANGLE_HEIGHT * extent / 2, hh)
    return np.stack([hw, hh], axis=-1)


def sample_scene_arrays(n: int, seed: int, split: str = "train") -> SceneArrays:
    """Draw the labels of ``n`` scenes of ``split`` deterministically from ``seed`` (no pixels)."""
    if n < 0:
        raise DataError(f"number of scenes must be >= 0, got {n}")
    combos = _allowed_combinations(split)
    k = 2 if split == "two_objects" else 1
    # The split is mixed into the seed so that "train" and "heldout" with seed 0 differ.
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, list(SPLITS).index(split)])
    pick = rng.integers(0, len(combos), size=(n, k))
    triples = combos[pick]  # (n, k, 3)
    shape, color, size = triples[..., 0], triples[..., 1], triples[..., 2]
    half = half_extent(shape, EXTENT_ARRAY[size])  # (n, k, 2)
    lo, hi = MARGIN + half, 1 - MARGIN - half
    pos = lo + (hi - lo) * rng.random((n, k, 2))
    if k == 2:
        # Rejection sampling of both positions until the two boxes are apart by MIN_GAP on at
        # least one axis (uniform over the allowed layouts); vectorised over scenes in conflict.
        bad = _overlaps(pos, half)
        tries = 0
        while bad.any():
            m = int(bad.sum())
            pos[bad] = lo[bad] + (hi[bad] - lo[bad]) * rng.random((m, 2, 2))
            bad = _overlaps(pos, half)
            tries += 1
            if tries > 1000:  # pragma: no cover - geometry always leaves room at these sizes
                raise DataError("could not place two non-overlapping objects")
    return SceneArrays(
        index={"shape": shape, "color": color, "size": size},
        positions=pos.astype(np.float32),
    )


def _overlaps(pos: np.ndarray, half: np.ndarray) -> np.ndarray:
    sep = np.abs(pos[:, 0] - pos[:, 1]) - half[:, 0] - half[:, 1]  # (n, 2)
    return ~(sep >= MIN_GAP).any(axis=1)


def two_object_layouts_near(n: int, seed: int, points, radius: float, held: dict | None = None,
                            rounds: int = 16, batch: int = 8192, excluded: dict | None = None) -> SceneArrays:
    """Up to ``n`` scenes of the ``two_objects`` split distributed as the generator's scenes in
    which object i's centre lies within ``radius`` of ``points[i]`` (i = 0, 1), drawn without
    generating and discarding whole scenes (within 0.05 of two points that is one scene in
    10³–10⁴).

    The generator draws each object's combination c_i uniformly, then both centres uniformly in
    their boxes until the boxes keep MIN_GAP apart: given c, the centres are uniform over the
    allowed layouts L(c), of volume V(c). Given the discs D, they stay uniform over L(c) ∩ D, and c
    is weighed by vol(L(c) ∩ D) / V(c). A proposal draws c as the generator does, among the pairs
    with w(c) > 0, and each centre uniformly in its disc ∩ box (area A_i(c)); it is kept with
    probability w(c) / max w, w(c) = A_0(c)·A_1(c) / V(c), and then only where the boxes keep
    apart, so the kept scenes follow the conditional exactly. V(c) is exact: per axis the two
    centres are independent uniforms, so P(the boxes overlap) = P(|Δx| < a_x)·P(|Δy| < a_y).
    ``held``: family → value indices that some object must have as well (w is 0 for the other
    combinations); ``excluded``: family → value indices that neither object has. Fewer than ``n``
    rows where the event is too rare for ``rounds`` batches of proposals, none where no allowed
    layout has both centres in the discs."""
    pts = np.asarray(points, dtype=np.float64).reshape(2, 2)
    r = float(radius)
    combos = _allowed_combinations("two_objects")
    half = half_extent(combos[:, 0], EXTENT_ARRAY[combos[:, 2]]).astype(np.float64)  # (M, 2)
    lo, hi = MARGIN + half, 1 - MARGIN - half
    area = np.stack([_disc_box_area(pts[i], r, lo, hi) for i in range(2)])  # (2, M)
    side = hi - lo  # (M, 2)
    reach = half[:, None, :] + half[None, :, :] + MIN_GAP  # (M, M, 2): closer than this on both axes overlaps
    p_close = np.ones(reach.shape[:2])
    for axis in range(2):
        p_close *= _uniform_gap_below(lo[:, None, axis], hi[:, None, axis], lo[None, :, axis], hi[None, :, axis],
                                      reach[..., axis])
    allowed = side.prod(1)[:, None] * side.prod(1)[None, :] * (1 - p_close)  # V(c), (M, M)
    w = area[0][:, None] * area[1][None, :] / allowed
    column = [name for name, _ in DISCRETE_FAMILIES]  # the order of a combination's indices
    for family, wanted in (held or {}).items():
        for v in wanted:
            has = combos[:, column.index(family)] == v
            w = w * (has[:, None] | has[None, :])
    for family, unwanted in (excluded or {}).items():
        has = np.isin(combos[:, column.index(family)], list(unwanted))
        w = w * (~has[:, None] & ~has[None, :])
    empty = SceneArrays({k: np.zeros((0, 2), np.int64) for k in ("shape", "color", "size")},
                        np.zeros((0, 2, 2), np.float32))
    top = w.max()
    if not top > 0:
        return empty
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, list(SPLITS).index("two_objects"), 0x1A7])
    picks, centres, got = [], [], 0
    support = np.flatnonzero(w > 0)  # the generator draws every pair of combinations equally often
    for _ in range(int(rounds)):
        pick = np.stack(np.divmod(support[rng.integers(0, len(support), size=int(batch))], len(combos)), 1)
        pick = pick[rng.random(int(batch)) < w[pick[:, 0], pick[:, 1]] / top]
        pos = np.stack([_uniform_in_disc_box(rng, pts[i], r, lo[pick[:, i]], hi[pick[:, i]]) for i in range(2)], 1)
        ok = ~_overlaps(pos, half[pick])
        picks.append(pick[ok])
        centres.append(pos[ok])
        got += int(ok.sum())
        if got >= n:
            break
    if not got:
        return empty
    pick = np.concatenate(picks)[:n]
    triples = combos[pick]  # (m, 2, 3)
    return SceneArrays({"shape": triples[..., 0], "color": triples[..., 1], "size": triples[..., 2]},
                       np.concatenate(centres)[:n].astype(np.float32))


def _disc_box_area(centre: np.ndarray, r: float, lo: np.ndarray, hi: np.ndarray, nodes: int = 4096) -> np.ndarray:
    """(M,) area of the disc of radius ``r`` about ``centre`` within each box [lo, hi] (M, 2): the
    chord lengths clipped to the box, integrated over x = cx + r·sin θ (midpoint rule in θ, where
    the integrand has no square-root end points)."""
    theta = (np.arange(nodes) + 0.5) / nodes * np.pi - np.pi / 2
    x = centre[0] + r * np.sin(theta)  # (Q,)
    half_chord = r * np.cos(theta)
    top = np.minimum(hi[:, 1:2], centre[1] + half_chord)  # (M, Q)
    bottom = np.maximum(lo[:, 1:2], centre[1] - half_chord)
    inside = (x >= lo[:, 0:1]) & (x <= hi[:, 0:1])
    chord = np.where(inside, np.clip(top - bottom, 0, None), 0.0)
    return (chord * r * np.cos(theta)).sum(1) * (np.pi / nodes)


def _uniform_gap_below(l1, h1, l2, h2, a) -> np.ndarray:
    """P(|X − Y| < a) for independent X ~ U[l1, h1], Y ~ U[l2, h2] (arrays broadcast): the length
    of [x − a, x + a] ∩ [l2, h2] is piecewise linear in x, so the trapezoid rule over its break
    points is exact."""
    l1, h1, l2, h2, a = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (l1, h1, l2, h2, a)))
    knots = np.stack([l1, h1, l2 - a, l2 + a, h2 - a, h2 + a], -1)
    knots = np.sort(np.clip(knots, l1[..., None], h1[..., None]), -1)
    overlap = np.clip(np.minimum(knots + a[..., None], h2[..., None]) - np.maximum(knots - a[..., None], l2[..., None]),
                      0, None)
    integral = ((overlap[..., 1:] + overlap[..., :-1]) / 2 * np.diff(knots, axis=-1)).sum(-1)
    return integral / ((h1 - l1) * (h2 - l2))


def _uniform_in_disc_box(rng: np.random.Generator, centre: np.ndarray, r: float, lo: np.ndarray,
                         hi: np.ndarray) -> np.ndarray:
    """(m, 2) points, each uniform in the disc of radius ``r`` about ``centre`` within its box (rows
    of ``lo``, ``hi``; every intersection non-empty): uniform in the box ∩ the disc's square, kept
    when inside the disc, until every row has one."""
    a, b = np.maximum(lo, centre - r), np.minimum(hi, centre + r)
    out = np.empty_like(a)
    todo = np.arange(len(a))
    while len(todo):
        cand = a[todo] + (b[todo] - a[todo]) * rng.random((len(todo), 2))
        hit = ((cand - centre) ** 2).sum(1) <= r * r
        out[todo[hit]] = cand[hit]
        todo = todo[~hit]
    return out


def render_scenes(arrays: SceneArrays, image_size: int = 32, chunk: int = 512) -> np.ndarray:
    """Render uint8 images (N, S, S, 3) for the labels in ``arrays``."""
    if image_size < 8:
        raise DataError(f"image_size must be at least 8, got {image_size}")
    n = len(arrays)
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    centres = (np.arange(image_size, dtype=np.float32) + 0.5)  # pixel centres, in pixels
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        canvas = np.zeros((stop - start, image_size, image_size, 3), dtype=np.float32)
        for k in range(arrays.n_objects):
            sl = slice(start, stop)
            cov = coverage(
                arrays.index["shape"][sl, k],
                EXTENT_ARRAY[arrays.index["size"][sl, k]] * image_size,
                arrays.positions[sl, k] * image_size,
                centres,
            )  # (b, S, S)
            colour = PALETTE_ARRAY[arrays.index["color"][sl, k]]  # (b, 3)
            # Objects never overlap, so adding their coverages composites them exactly.
            canvas += cov[..., None] * colour[:, None, None, :]
        np.clip(canvas + 0.5, 0, 255, out=canvas)
        out[start:stop] = canvas.astype(np.uint8)
    return out


def coverage(shape: np.ndarray, extent: np.ndarray, centre: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage (b, S, S) in [0, 1] of one object per image; all lengths in pixels."""
    b, s = shape.shape[0], px.shape[0]
    dx = px[None, None, :] - centre[:, 0, None, None]  # (b, 1, S)
    dy = px[None, :, None] - centre[:, 1, None, None]  # (b, S, 1)
    sdf = np.empty((b, s, s), dtype=np.float32)
    e = extent[:, None, None].astype(np.float32)
    for code in range(3):
        m = shape == code
        if not m.any():
            continue
        x, y, d = dx[m], dy[m], e[m]
        if code == 0:  # circle of diameter d
            sdf[m] = np.sqrt(x * x + y * y) - d / 2
        elif code == 1:  # axis-aligned square of side 0.9 d
            sdf[m] = np.maximum(np.abs(x), np.abs(y)) - SQUARE_SIDE * d / 2
        else:  # upward equilateral triangle of height h, box-centred: apex at -h/2, base at +h/2
            sdf[m] = _triangle_sdf(x, y, TRIANGLE_HEIGHT * d)
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _triangle_sdf(x: np.ndarray, y: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Exact signed distance to an upward equilateral triangle of height ``h`` centred in its box.

    Inigo Quilez's equilateral-triangle SDF, moved to image coordinates (y down, origin at the box
    centre); exact at the corners too, so the anti-aliasing band never pokes out past a vertex.
    """
    k = np.float32(np.sqrt(3.0))
    r = h / k  # half the side
    px = np.abs(x) - r
    py = (h / 6 - y) + r / k  # y up, origin on the base
    fold = px + k * py > 0
    px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * r, 0)
    return (-np.sqrt(px * px + py * py) * np.sign(py)).astype(np.float32)


def generate_scenes(
    n: int, seed: int, split: str = "train", image_size: int | None = None
) -> tuple[np.ndarray, SceneArrays]:
    arrays = sample_scene_arrays(n, seed, split)
    return render_scenes(arrays, image_size or SCENES.image_size), arrays


generate_arrays = generate_scenes  # the name conceptlang.data.generate dispatches to
