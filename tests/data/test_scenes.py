"""The scenes generator: labels agree with the pixels, splits hold what they claim, seeds determine output."""

import numpy as np
import pytest

from conceptlang.data import check_split, generate, get_domain, label_arrays, splits, to_tensor, to_uint8
from conceptlang.data import scenes as sc
from conceptlang.errors import DataError
from conceptlang.judge.validity import connected_components


def _pixel(img, obj):
    s = img.shape[0]
    return img[int(obj["y"] * s), int(obj["x"] * s)]


@pytest.mark.parametrize("split", list(sc.SPLITS))
def test_pixel_at_each_labelled_centre_is_the_labelled_colour(split):
    imgs, labels = generate("scenes", 300, seed=3, split=split)
    for img, lab in zip(imgs, labels):
        for obj in lab["objects"]:
            # The box centre lies ≥ 2 px inside every shape, so the pixel is fully covered.
            assert tuple(_pixel(img, obj)) == sc.PALETTE[obj["color"]]


@pytest.mark.parametrize("split,count", [("train", 1), ("heldout", 1), ("continual2", 1), ("two_objects", 2)])
def test_object_count_by_connected_components(split, count):
    imgs, labels = generate("scenes", 300, seed=4, split=split)
    comp = connected_components(imgs.max(-1) > 0)
    for c, lab in zip(comp, labels):
        assert len(np.unique(c[c > 0])) == count == len(lab["objects"])


def test_background_is_black_and_objects_stay_inside():
    imgs, _ = generate("scenes", 2000, seed=5, split="train")
    border = np.concatenate([imgs[:, 0], imgs[:, -1], imgs[:, :, 0], imgs[:, :, -1]], axis=1)
    assert border.max() == 0
    assert (imgs[:, 0, 0] == 0).all()


@pytest.mark.parametrize("shape", sc.SHAPES)
@pytest.mark.parametrize("size", sc.SIZES)
def test_area_matches_the_size(shape, size):
    # Analytic coverage integrates to the shape's area up to a fraction of a pixel per edge pixel.
    arrays = sc.sample_scene_arrays(50, seed=6, split="train")
    arrays.index["shape"][:] = sc.SHAPES.index(shape)
    arrays.index["size"][:] = sc.SIZES.index(size)
    arrays.index["color"][:] = sc.COLORS.index("red")
    arrays.positions[:] = 0.5
    img = sc.render_scenes(arrays, 32)
    area = img[..., 0].astype(float).sum((1, 2)) / sc.PALETTE["red"][0]
    d = sc.SIZE_EXTENT[size] * 32
    expected = {
        "circle": np.pi * d * d / 4,
        "square": (sc.SQUARE_SIDE * d) ** 2,
        "triangle": (sc.TRIANGLE_HEIGHT * d) ** 2 / np.sqrt(3),
    }[shape]
    assert np.allclose(area, expected, rtol=0.03)


def test_large_objects_are_larger_than_small_ones():
    imgs, labels = generate("scenes", 600, seed=7)
    area = (imgs.max(-1) > 0).sum((1, 2))
    for shape in sc.SHAPES:
        small = [a for a, l in zip(area, labels) if l[shape] and l["small"]]
        large = [a for a, l in zip(area, labels) if l[shape] and l["large"]]
        assert max(small) < min(large)


def test_same_seed_same_scenes_other_seed_other_scenes():
    a, la = generate("scenes", 64, seed=11)
    b, lb = generate("scenes", 64, seed=11)
    c, _ = generate("scenes", 64, seed=12)
    assert np.array_equal(a, b) and la == lb
    assert not np.array_equal(a, c)


def test_labels_do_not_depend_on_resolution():
    _, l32 = generate("scenes", 20, seed=2)
    big, l96 = generate("scenes", 20, seed=2, image_size=96)
    assert l32 == l96 and big.shape == (20, 96, 96, 3)
    for img, lab in zip(big, l96):
        assert tuple(_pixel(img, lab["objects"][0])) == sc.PALETTE[lab["objects"][0]["color"]]


def _combos(labels):
    return {(o["shape"], o["color"], o["size"]) for lab in labels for o in lab["objects"]}


def test_train_excludes_and_heldout_contains_only_the_heldout_combinations():
    _, train = generate("scenes", 5000, seed=1, split="train")
    _, held = generate("scenes", 500, seed=1, split="heldout")
    heldout = set(sc.HELDOUT_COMBINATIONS)
    assert _combos(train) == {(s, c, z) for s in sc.SHAPES for c in sc.COLORS for z in sc.SIZES} - heldout
    assert _combos(held) == heldout


def test_continual_splits():
    _, c1 = generate("scenes", 500, seed=1, split="continual1")
    _, c2 = generate("scenes", 500, seed=1, split="continual2")
    _, c3 = generate("scenes", 500, seed=1, split="continual3")
    assert _combos(c1) == {("square", "purple", "large")}
    assert _combos(c2) == {(s, "purple", "large") for s in sc.SHAPES}
    assert _combos(c3) == {("square", c, "large") for c in sc.COLORS}
    xs = [o["x"] for lab in c1 for o in lab["objects"]]
    assert np.std(xs) > 0.1  # positions vary


def test_two_objects_do_not_overlap_and_label_both():
    imgs, labels = generate("scenes", 500, seed=9, split="two_objects")
    for lab in labels:
        assert len(lab["objects"]) == 2
        for o in lab["objects"]:
            assert lab[o["shape"]] and lab[f"color.{o['color']}"] and o["size"] == "small"


def test_label_format_is_qualified_and_bare():
    _, labels = generate("scenes", 10, seed=0)
    lab = labels[0]
    o = lab["objects"][0]
    assert lab[f"shape.{o['shape']}"] is True and lab[o["shape"]] is True
    assert sum(lab[f"shape.{s}"] for s in sc.SHAPES) == 1
    assert sum(lab[f"color.{c}"] for c in sc.COLORS) == 1
    assert 0 <= o["x"] <= 1 and 0 <= o["y"] <= 1


def test_arrays_match_dicts():
    imgs, arrays = generate("scenes", 50, seed=8, split="two_objects", as_arrays=True)
    imgs2, dicts = generate("scenes", 50, seed=8, split="two_objects")
    assert np.array_equal(imgs, imgs2)
    assert arrays.to_dicts() == dicts
    assert arrays.index["shape"].shape == (50, 2) and arrays.positions.shape == (50, 2, 2)


def test_domain_description():
    dom = get_domain("scenes")
    assert [f.name for f in dom.families] == ["shape", "color", "size", "position"]
    assert dom.family("position").params == ("x", "y")
    assert set(splits("scenes")) == {"train", "heldout", "continual1", "continual2", "continual3", "two_objects"}


def test_tensor_round_trip_is_exact():
    imgs, _ = generate("scenes", 8, seed=0)
    x = to_tensor(imgs)
    assert x.shape == (8, 3, 32, 32) and float(x.min()) == -1.0 and float(x.max()) <= 1.0
    assert np.array_equal(to_uint8(x), imgs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"split": "nope"}, "no split 'nope'"),
        ({"n": -1}, "non-negative"),
        ({"image_size": 4}, "image_size"),
        ({"colour": "red"}, "unknown options: colour"),
    ],
)
def test_bad_arguments_raise_data_error(kwargs, match):
    args = {"n": 2, "seed": 0, **kwargs}
    with pytest.raises(DataError, match=match):
        generate("scenes", **args)


def test_unknown_domain():
    with pytest.raises(DataError, match="unknown domain 'cats'"):
        get_domain("cats")


def test_connected_components_on_known_masks():
    m = np.zeros((1, 6, 6), bool)
    m[0, 0, 0] = m[0, 1, 1] = True  # diagonal neighbours: one 8-connected component
    m[0, 4, 4:6] = True
    m[0, 0, 5] = True
    lab = connected_components(m)
    assert len(np.unique(lab[lab > 0])) == 3
    assert lab[0, 0, 0] == lab[0, 1, 1] and lab[0, 4, 4] == lab[0, 4, 5] != lab[0, 0, 5]


def test_scenes_are_left_right_symmetric_with_x_reflected():
    """What the scenes manifest's ``mirror`` states: a scene's mirror image is the scene with every
    object's x reflected (x → 1 − x), and the positions' range is symmetric, so the flipped data is
    distributed as the data."""
    import dataclasses

    from conceptlang.data.scenes import EXTENT_ARRAY, MARGIN, half_extent, render_scenes, sample_scene_arrays

    for split in ("train", "heldout", "two_objects"):
        arrays = sample_scene_arrays(128, seed=3, split=split)
        flipped = dataclasses.replace(arrays, positions=arrays.positions.copy())
        flipped.positions[..., 0] = 1.0 - flipped.positions[..., 0]
        a = render_scenes(arrays)[:, :, ::-1].astype(int)
        b = render_scenes(flipped).astype(int)
        diff = np.abs(a - b)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-4  # one object: exact; two: float rounding at a rim pixel
    for shape in range(3):
        half = half_extent(np.array([shape, shape]), EXTENT_ARRAY)  # (sizes, 2)
        lo, hi = MARGIN + half, 1 - MARGIN - half
        assert np.allclose(lo + hi, 1.0)


def test_circles_and_squares_turn_with_their_positions():
    """What the scenes manifest's ``mirror.turns`` states: a circle or square scene flipped up-down is
    the scene with y reflected, and transposed the scene with x and y swapped; their positions range
    alike on both axes. A triangle (pointing up) is neither."""
    import dataclasses

    from conceptlang.data.scenes import EXTENT_ARRAY, MARGIN, half_extent, render_scenes, sample_scene_arrays

    arrays = sample_scene_arrays(256, seed=4, split="train")
    images = render_scenes(arrays).astype(int)  # (N, H, W, 3): rows are y, columns x
    down = dataclasses.replace(arrays, positions=arrays.positions.copy())
    down.positions[..., 1] = 1.0 - down.positions[..., 1]
    swapped = dataclasses.replace(arrays, positions=arrays.positions[..., ::-1].copy())
    round_or_square = arrays.index["shape"][:, 0] < 2
    for turned, moved in ((images[:, ::-1], down), (images.transpose(0, 2, 1, 3), swapped)):
        same = (turned == render_scenes(moved).astype(int)).all(axis=(1, 2, 3))
        assert same[round_or_square].all() and not same[~round_or_square].any()
    for shape in (0, 1):
        half = half_extent(np.array([shape, shape]), EXTENT_ARRAY)  # (sizes, 2): (half-width, half-height)
        assert np.array_equal(half[:, 0], half[:, 1])
        lo, hi = MARGIN + half, 1 - MARGIN - half
        assert np.allclose(lo + hi, 1.0)


def test_an_unknown_split_is_refused_naming_the_domains_splits():
    for name in splits("scenes"):
        check_split("scenes", name)  # every listed split passes
    expected = f"scenes has no split 'nosuch' (splits: {', '.join(splits('scenes'))})"
    for call in (lambda: check_split(get_domain("scenes"), "nosuch"), lambda: generate("scenes", 2, split="nosuch"),
                 lambda: label_arrays("scenes", 2, split="nosuch")):
        with pytest.raises(DataError) as err:
            call()
        assert err.value.message == expected
    with pytest.raises(DataError, match="faces has no split 'heldout'"):
        check_split("faces", "heldout")


# -- two-object layouts near given points --------------------------------------------------------

def test_the_exact_pieces_of_the_layout_sampler():
    # P(|X − Y| < a), X ~ U[0.1, 0.6], Y ~ U[0.3, 0.9], a = 0.2: the length of [x − a, x + a] ∩ [0.3, 0.9]
    # is x − 0.1 on [0.1, 0.5] (∫ = 0.08) and 0.4 on [0.5, 0.6] (0.04): 0.12 / (0.5 · 0.6) = 0.4
    assert sc._uniform_gap_below(0.1, 0.6, 0.3, 0.9, 0.2) == pytest.approx(0.4, abs=1e-12)
    assert sc._uniform_gap_below(0.0, 1.0, 0.0, 1.0, 0.5) == pytest.approx(0.75, abs=1e-12)  # 1 − (1 − a)²
    assert sc._uniform_gap_below(0.0, 0.1, 0.5, 0.6, 0.2) == 0.0
    full, half = np.array([[0.0, 0.0]]), np.array([[0.5, 0.0]])
    assert sc._disc_box_area(np.array([0.5, 0.5]), 0.1, full, np.array([[1.0, 1.0]]))[0] == \
        pytest.approx(np.pi * 0.01, rel=1e-6)
    assert sc._disc_box_area(np.array([0.5, 0.5]), 0.1, half, np.array([[1.0, 1.0]]))[0] == \
        pytest.approx(np.pi * 0.01 / 2, rel=1e-6)
    quarter = sc._disc_box_area(np.array([0.5, 0.5]), 0.1, np.array([[0.5, 0.5]]), np.array([[1.0, 1.0]]))[0]
    assert quarter == pytest.approx(np.pi * 0.01 / 4, rel=1e-6)


def test_layouts_near_two_points_follow_the_generator_given_the_event():
    """The conditional sampler against the generator's own scenes kept where each object lies
    within 0.15 of its point: two places 0.28 apart, where the objects' gap tilts the shapes."""
    pts, r = np.array([(0.36, 0.5), (0.64, 0.5)]), 0.15
    a = label_arrays("scenes", 1 << 19, seed=11, split="two_objects")
    pos = a.positions.astype(np.float64)
    keep = (np.linalg.norm(pos[:, 0] - pts[0], axis=1) <= r) & (np.linalg.norm(pos[:, 1] - pts[1], axis=1) <= r)
    assert keep.sum() > 9000
    b = sc.two_object_layouts_near(20000, 3, pts, r)
    assert len(b.positions) == 20000

    def pairs(shape):
        m = np.zeros((3, 3))
        np.add.at(m, (shape[:, 0], shape[:, 1]), 1)
        return m / len(shape)

    want, got = pairs(a.index["shape"][keep]), pairs(b.index["shape"])
    assert 0.5 * np.abs(want - got).sum() < 0.03  # sampling noise at ~9,400 kept scenes: about 0.015
    # the event tilts the split's even 1/9 per shape pair (circles, in the smallest boxes, most often
    # in the discs), and the sampler draws the tilt
    for m in (want, got):
        assert m[0, 0] > 0.135 and m[2, 2] < 0.1
    gap_want = np.abs(pos[keep, 0] - pos[keep, 1]).mean(0)
    gap_got = np.abs(b.positions[:, 0] - b.positions[:, 1]).mean(0)
    assert np.abs(gap_want - gap_got).max() < 0.006
    assert (b.index["size"] == sc.SIZES.index("small")).all()
    colours = np.bincount(b.index["color"].ravel(), minlength=6) / b.index["color"].size
    assert np.abs(colours - np.bincount(a.index["color"][keep].ravel(), minlength=6) / (2 * keep.sum())).max() < 0.02
    # deterministic in the seed; empty where no allowed layout has both centres in the discs
    again = sc.two_object_layouts_near(50, 3, pts, r)
    assert np.array_equal(again.positions, b.positions[:50]) and np.array_equal(again.index["shape"], b.index["shape"][:50])
    assert len(sc.two_object_layouts_near(10, 0, [(0.4, 0.5), (0.6, 0.5)], 0.05).positions) == 0
    assert len(sc.two_object_layouts_near(10, 0, [(0.5, 0.5), (0.5, 0.5)], 0.1).positions) == 0


def test_layouts_near_two_points_can_ask_for_values_some_object_holds():
    pts, r = np.array([(0.3, 0.3), (0.7, 0.6)]), 0.15
    tri, red = sc.SHAPES.index("triangle"), sc.COLORS.index("red")
    a = label_arrays("scenes", 1 << 19, seed=12, split="two_objects")
    pos = a.positions.astype(np.float64)
    keep = (np.linalg.norm(pos[:, 0] - pts[0], axis=1) <= r) & (np.linalg.norm(pos[:, 1] - pts[1], axis=1) <= r)
    keep &= (a.index["shape"] == tri).any(1) & (a.index["color"] == red).any(1)
    assert keep.sum() > 2000
    b = sc.two_object_layouts_near(20000, 4, pts, r, held={"shape": [tri], "color": [red]})
    assert len(b.positions) == 20000
    assert (b.index["shape"] == tri).any(1).all() and (b.index["color"] == red).any(1).all()

    def joint(index):  # (is object 0 the triangle, is object 0 red, is object 1 the triangle, is object 1 red)
        key = (index["shape"] == tri).astype(int) * 2 + (index["color"] == red)
        return np.bincount(key[:, 0] * 4 + key[:, 1], minlength=16) / len(key)

    want = joint({f: a.index[f][keep] for f in ("shape", "color")})
    assert 0.5 * np.abs(want - joint(b.index)).sum() < 0.04
    # no two-object scene has two triangles that are both red and ... a value no object can hold
    assert len(sc.two_object_layouts_near(10, 0, pts, r, held={"size": [sc.SIZES.index("large")]}).positions) == 0


def test_layouts_near_two_points_can_exclude_values_no_object_holds():
    """``excluded`` against the generator's scenes kept where each object lies within 0.15 of its
    point and neither object is red nor a circle, with a triangle held by some object."""
    pts, r = np.array([(0.3, 0.6), (0.7, 0.4)]), 0.15
    red, circle, tri = sc.COLORS.index("red"), sc.SHAPES.index("circle"), sc.SHAPES.index("triangle")
    a = label_arrays("scenes", 1 << 19, seed=13, split="two_objects")
    pos = a.positions.astype(np.float64)
    keep = (np.linalg.norm(pos[:, 0] - pts[0], axis=1) <= r) & (np.linalg.norm(pos[:, 1] - pts[1], axis=1) <= r)
    keep &= ~(a.index["color"] == red).any(1) & ~(a.index["shape"] == circle).any(1) & (a.index["shape"] == tri).any(1)
    assert keep.sum() > 2000
    b = sc.two_object_layouts_near(20000, 5, pts, r, held={"shape": [tri]}, excluded={"color": [red], "shape": [circle]})
    assert len(b.positions) == 20000
    assert not (b.index["color"] == red).any() and not (b.index["shape"] == circle).any()
    assert (b.index["shape"] == tri).any(1).all()

    def tris(index):  # (is object 0 a triangle, is object 1)
        t = (index["shape"] == tri).astype(int)
        return np.bincount(t[:, 0] * 2 + t[:, 1], minlength=4) / len(t)

    def colours(index):
        return np.bincount(index["color"].ravel(), minlength=6) / index["color"].size

    want = {f: a.index[f][keep] for f in ("shape", "color")}
    assert 0.5 * np.abs(tris(want) - tris(b.index)).sum() < 0.03  # sampling noise at ~4,400 kept scenes: ~0.01
    assert 0.5 * np.abs(colours(want) - colours(b.index)).sum() < 0.03
    # excluding the only value the split has leaves nothing; a value no object has excludes nothing
    assert len(sc.two_object_layouts_near(10, 0, pts, r, excluded={"size": [sc.SIZES.index("small")]}).positions) == 0
    plain = sc.two_object_layouts_near(50, 6, pts, r)
    same = sc.two_object_layouts_near(50, 6, pts, r, excluded={"size": [sc.SIZES.index("large")]})
    assert np.array_equal(plain.positions, same.positions) and np.array_equal(plain.index["color"], same.index["color"])
