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

    assert not set(FACE_DEFECT_KINDS) & set(CORRUPTION_KINDS["faces"])  # kept out of the default set
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
