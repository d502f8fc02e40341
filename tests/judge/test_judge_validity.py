"""The computed scenes validity check, case by case, with the reason it gives."""

import numpy as np
import pytest

from conceptlang.data import scenes as sc
from conceptlang.judge.validity import analyse_scenes, corruptions, scenes_valid


def _one(shape="circle", color="red", size="large", x=0.5, y=0.5):
    arrays = sc.SceneArrays(
        index={"shape": np.array([[sc.SHAPES.index(shape)]]), "color": np.array([[sc.COLORS.index(color)]]),
               "size": np.array([[sc.SIZES.index(size)]])},
        positions=np.array([[[x, y]]], np.float32),
    )
    return sc.render_scenes(arrays, 32)


@pytest.mark.parametrize("shape", sc.SHAPES)
@pytest.mark.parametrize("size", sc.SIZES)
def test_every_clean_shape_matches_itself_best(shape, size):
    an = analyse_scenes(_one(shape, "cyan", size, 0.41, 0.63))[0]
    assert an.reasons(1) == []
    obj = an.objects[0]
    assert np.unravel_index(obj.shape_iou.argmax(), obj.shape_iou.shape) == (sc.SHAPES.index(shape), sc.SIZES.index(size))
    assert obj.best_iou >= 0.95
    assert np.allclose(obj.rgb, sc.PALETTE["cyan"], atol=1)


def test_half_erased_circle_is_not_a_domain_shape():
    img = _one("circle", "red", "large")
    img[:, :, 16:] = 0  # erase the right half
    reasons = analyse_scenes(img)[0].reasons(1)
    assert len(reasons) == 1 and reasons[0].startswith("object 0 is not a domain shape")


def test_two_coloured_square_is_not_uniform():
    img = _one("square", "blue", "large")
    img[0, :16][img[0, :16].max(-1) > 0] = sc.PALETTE["yellow"]
    reasons = analyse_scenes(img)[0].reasons(1)
    assert any("not uniformly coloured" in r for r in reasons)


def test_two_tone_object_sharing_its_strongest_channel_is_not_uniform():
    # Found in sampler output: a triangle blue at the top and cyan below. Both halves differ from the
    # black background by the same blue channel, so a colour read off the most contrasting pixels
    # saw only the blue half and passed it; the eroded interior reads both halves.
    img = _one("triangle", "blue", "large")
    obj = img[0].max(-1) > 0
    lower = obj & (np.arange(32)[:, None] >= 16)
    img[0][lower] = np.minimum(img[0][lower].astype(int) + np.array([0, 140, 0]), 255).astype(np.uint8)
    an = analyse_scenes(img)[0]
    assert len(an.objects) == 1
    assert an.objects[0].color_std > 40
    assert any("not uniformly coloured" in r for r in an.reasons(1))
    clean = analyse_scenes(_one("triangle", "blue", "large"))[0]
    assert clean.reasons(1) == [] and clean.objects[0].color_std < 1


def test_off_palette_colour_and_grey_background():
    img = _one("circle", "red", "large")
    img[img.max(-1) > 0] = (120, 120, 120)
    assert any("far from the palette" in r for r in analyse_scenes(img)[0].reasons(1))
    img = _one("circle", "red", "large")
    img[img.max(-1) == 0] = (90, 90, 90)
    assert "background is not plain dark" in analyse_scenes(img)[0].reasons(1)


def test_stray_pixels_and_object_count():
    img = _one("triangle", "green", "small", 0.3, 0.3)
    img[0, 28, 3] = img[0, 3, 28] = img[0, 28, 28] = img[0, 20, 3] = (200, 200, 200)
    assert analyse_scenes(img)[0].reasons(1) == ["4 stray foreground pixels"]
    two = _one("circle", "red", "small", 0.25, 0.25) + _one("square", "blue", "small", 0.75, 0.75)
    assert scenes_valid(two, 2).all() and not scenes_valid(two, 1).any()
    assert not scenes_valid(two).any()  # unstated: one object, never "one or two"
    assert scenes_valid(two, (1, 2)).all() and not scenes_valid(two, (1, 3)).any()  # an OR's allowed counts
    assert analyse_scenes(two)[0].reasons((1, 3)) == ["2 objects, expected 1 or 3"]
    assert analyse_scenes(two)[0].reasons(1) == ["2 objects, expected 1"]


def test_corruptions_are_deterministic_and_labelled():
    a, ka = corruptions("faces", 12, seed=5)
    b, kb = corruptions("faces", 12, seed=5)
    assert np.array_equal(a, b) and ka == kb
    assert ka[:6] == ["noise", "blur_blobs", "texture", "half_drawn", "multicolour_blob", "scrambled"]


def test_broken_face_kinds_are_drawn_and_differ_from_clean_faces():
    from conceptlang.data import faces as fc
    from conceptlang.judge.validity import CORRUPTION_KINDS, FACE_DEFECT_KINDS, corruptions

    assert CORRUPTION_KINDS["faces"][-4:] == FACE_DEFECT_KINDS  # in the default set
    bad, kinds = corruptions("faces", 8, seed=3, kinds=FACE_DEFECT_KINDS)
    assert kinds == list(FACE_DEFECT_KINDS) * 2 and bad.shape == (8, 32, 32, 3) and bad.dtype == np.uint8
    # the defects are no-ops at their neutral values, and change the picture otherwise
    a = fc.sample_face_arrays(6, 11)
    a.index["eyeglasses"][:, 0] = 0
    plain = fc.render_faces(a)
    same = fc.render_faces(a, defects={"second_hair": np.full(6, -1), "glasses_alpha": np.ones(6)})
    assert np.array_equal(plain, same)
    ghost = fc.render_faces(a, defects={"glasses_alpha": np.full(6, 0.3)})
    assert (np.abs(ghost.astype(int) - plain.astype(int)).max(axis=(1, 2, 3)) > 40).all()


# ---- faces: the generator fit ------------------------------------------------------------------


def _faces(n, seed, **index):
    from conceptlang.data import faces as fc

    a = fc.sample_face_arrays(n, seed)
    for fam, v in index.items():
        a.index[fam][:, 0] = v
    return a


def _fit(images, a):
    """The generator fit started from the true attributes and centre (what the judge's heads read)."""
    from conceptlang.judge.validity import FACE_FAMILIES, fit_faces

    return fit_faces(images, a.index["hair"][:, 0], {f: a.index[f][:, 0] == 0 for f in FACE_FAMILIES}, a.positions[:, 0])


def test_face_fit_explains_real_faces_clean_noisy_and_blurred():
    from conceptlang.data import faces as fc
    from conceptlang.judge.validity import FACE_FAMILIES, face_reasons

    a = _faces(24, 101)
    clean = fc.render_faces(a)
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape) + 0.5, 0, 255).astype(np.uint8)
    from PIL import Image, ImageFilter

    blurred = np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(1.0))) for im in clean])
    for imgs in (clean, noisy, blurred):
        fit = _fit(imgs, a)
        assert face_reasons(fit) == [[]] * 24
        # the fit finds the generator's own parameters
        assert np.array_equal(fit.arrays.nuisance["skin"], a.nuisance["skin"])
        assert np.array_equal(fit.arrays.nuisance["background"], a.nuisance["background"])
        for fam in ("hair",) + FACE_FAMILIES:
            assert np.array_equal(fit.arrays.index[fam], a.index[fam]), fam
        assert np.abs(fit.arrays.positions - a.positions).max() * 32 <= 0.25
        assert np.abs(fit.arrays.nuisance["scale"] - a.nuisance["scale"]).max() <= 0.01
        assert np.all(np.abs(fit.gain - 1) <= 0.05)
        for f in FACE_FAMILIES:  # no feature drawn part-way, up to the noise (σ 20 over a dark smile: se ≈ 0.08)
            assert np.all(np.abs(fit.opacity[f]) <= np.maximum(0.05, 4 * fit.opacity_se[f])), f
    assert _fit(clean, a).residual.max() <= 10 and _fit(clean, a).error.max() <= 1.5


def test_face_fit_fails_each_broken_face_with_its_reason():
    from conceptlang.data import faces as fc
    from conceptlang.judge.validity import face_reasons

    # glasses at 30 % opacity
    a = _faces(6, 102, eyeglasses=0)
    fit = _fit(fc.render_faces(a, defects={"glasses_alpha": np.full(6, 0.3)}), a)
    for r, op in zip(face_reasons(fit), fit.opacity["eyeglasses"]):
        assert r == [f"eyeglasses half-drawn (eyeglasses absent, {op:.2f} of the way to the other)"]
        assert 0.27 <= op <= 0.35
    # a blond cap over a black beard
    a = _faces(6, 103, hair=1, male=0)
    fit = _fit(fc.render_faces(a, defects={"second_hair": np.zeros(6, int)}), a)
    assert all(any(x.startswith("a region no generator face draws") for x in r) for r in face_reasons(fit))
    # a smile blended half-way with the closed mouth
    a = _faces(6, 104, smiling=0)
    b = _faces(6, 104, smiling=-1)
    mixed = np.clip(0.5 * fc.render_faces(a).astype(float) + 0.5 * fc.render_faces(b) + 0.5, 0, 255).astype(np.uint8)
    fit = _fit(mixed, a)
    for r, op in zip(face_reasons(fit), fit.opacity["smiling"]):
        assert any(x.startswith("smiling half-drawn") for x in r) and 0.45 <= op <= 0.55
    # contrast halved towards the mean colour
    a = _faces(6, 105)
    img = fc.render_faces(a).astype(float)
    mean = img.reshape(6, -1, 3).mean(1)[:, None, None]
    fit = _fit(np.clip(mean + 0.5 * (img - mean) + 0.5, 0, 255).astype(np.uint8), a)
    for r, g in zip(face_reasons(fit), fit.gain):
        assert r[0] == f"low contrast ({g:.2f} of a generator face's)" and 0.45 <= g <= 0.55


def test_face_fit_rejects_bad_input():
    from conceptlang.judge.validity import fit_faces

    with pytest.raises(ValueError, match=r"fit_faces needs \(N, 32, 32, 3\) images"):
        fit_faces(np.zeros((2, 16, 16, 3), np.uint8), np.zeros(2, int), {}, np.zeros((2, 2)))
    fit = fit_faces(np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, int),
                    {f: np.zeros(0, bool) for f in ("male", "smiling", "eyeglasses", "young")}, np.zeros((0, 2)))
    assert len(fit.gain) == 0
