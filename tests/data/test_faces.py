"""The faces generator: each labelled attribute is drawn where it should be; sampling is independent."""

import numpy as np
import pytest

from conceptlang.data import faces as fc
from conceptlang.data import generate, get_domain, splits

S = 64  # geometry is resolution-independent; at 64 px every probed feature is several pixels wide


@pytest.fixture(scope="module")
def rendered():
    arrays = fc.sample_face_arrays(160, seed=21)
    return fc.render_faces(arrays, S), arrays, arrays.to_dicts()


def _probe(img, arrays, i, u, v):
    """Pixel at face coordinates (u, v): offsets in units of the face's x/y radii from its centre."""
    cx, cy = arrays.positions[i, 0] * S
    s = arrays.nuisance["scale"][i]
    rx, ry = fc.FACE_RADII[0] * S * s, fc.FACE_RADII[1] * S * s
    return img[int(cy + v * ry), int(cx + u * rx)].astype(int)


def _skin(arrays, i):
    return fc.SKIN_RGB[arrays.nuisance["skin"][i]].astype(int)


def test_hair_cap_or_bald_head(rendered):
    imgs, arrays, labels = rendered
    for i, lab in enumerate(labels):
        top = _probe(imgs[i], arrays, i, 0.0, -0.9)
        if lab["bald"]:
            assert (top == _skin(arrays, i)).all()
        else:
            hair = next(h for h in fc.HAIR if lab[h])
            assert (top == fc.HAIR_RGB[fc.HAIR.index(hair)]).all()


def test_male_has_a_beard(rendered):
    imgs, arrays, labels = rendered
    for i, lab in enumerate(labels):
        chin = _probe(imgs[i], arrays, i, 0.0, 0.84)
        if lab["male"]:
            want = fc.BALD_BEARD_RGB if lab["bald"] else fc.HAIR_RGB[fc.HAIR.index(lab["objects"][0]["hair"])]
            assert (chin == want).all()
        else:
            assert (chin == _skin(arrays, i)).all()


def test_not_male_and_not_bald_has_long_hair_beside_the_face(rendered):
    imgs, arrays, labels = rendered
    for i, lab in enumerate(labels):
        side = _probe(imgs[i], arrays, i, -1.15, 0.6)  # left of the jaw, outside the face
        long_hair = not lab["male"] and not lab["bald"]
        hair_rgb = fc.HAIR_RGB[fc.HAIR.index(lab["objects"][0]["hair"])] if lab["objects"][0]["hair"] != "bald" else None
        if long_hair:
            assert (side == hair_rgb).all()
        else:
            assert (side == fc.BACKGROUND_RGB[arrays.nuisance["background"][i]]).all()


def test_smiling_mouth(rendered):
    imgs, arrays, labels = rendered
    for i, lab in enumerate(labels):
        mouth = _probe(imgs[i], arrays, i, 0.0, 0.5)
        if lab["smiling"]:
            assert (mouth == fc.SMILE_RGB).all()
        else:
            assert np.abs(mouth - fc.SMILE_RGB).max() > 30


def test_eyeglasses_frames(rendered):
    imgs, arrays, labels = rendered
    for i, lab in enumerate(labels):
        frame = _probe(imgs[i], arrays, i, -0.63, -0.08)  # outer edge of the left frame
        if lab["eyeglasses"]:
            assert (frame == fc.GLASSES_RGB).all()
        else:
            assert np.abs(frame - fc.GLASSES_RGB).max() > 60


def test_young_blush_old_wrinkles(rendered):
    imgs, arrays, labels = rendered
    for i, lab in enumerate(labels):
        skin = fc.SKIN_RGB[arrays.nuisance["skin"][i]]
        cheek = _probe(imgs[i], arrays, i, 0.55, 0.27)  # below the glasses frame
        for row in fc.WRINKLE_ROWS:
            wrinkle = _probe(imgs[i], arrays, i, 0.0, row)  # 2 px thick at 64 px: fully covered
            if lab["young"]:
                assert (wrinkle == skin).all()
            else:
                assert (wrinkle == np.floor(skin * 0.5 + 0.5)).all()
        if lab["young"]:
            assert (cheek == np.floor(skin + 0.8 * (fc.BLUSH_RGB - skin) + 0.5)).all()
        else:
            assert (cheek == skin).all()


def test_labels_hold_every_attribute_and_the_hair_family_is_exclusive(rendered):
    _, _, labels = rendered
    for lab in labels:
        for a in fc.ATTRIBUTES:
            assert isinstance(lab[a], bool)
        assert sum(lab[h] for h in fc.HAIR) == 1
        assert lab["hair.bald"] == lab["bald"] and lab["male.male"] == lab["male"]


def test_attributes_are_sampled_independently():
    arrays = fc.sample_face_arrays(8000, seed=5)  # labels only: no need to render
    attrs = arrays.attributes
    n = 8000
    tol = 4 * np.sqrt(0.25 / n)  # four standard errors
    for b in fc.BINARY:
        assert abs(attrs[b].mean() - 0.5) < tol
    for h in fc.HAIR:
        assert abs(attrs[h].mean() - 0.25) < tol
    for a in fc.BINARY:
        for b in ("male", "smiling", "black_hair", "bald"):
            if a != b:
                joint = (attrs[a] & attrs[b]).mean()
                assert abs(joint - attrs[a].mean() * attrs[b].mean()) < tol


def test_design_card_expression_is_meaningful():
    from conceptlang.syntax import evaluate, parse_expr

    expr = parse_expr("(male & smiling) | ~black_hair")
    _, labels = generate("faces", 400, seed=3)
    truth = [evaluate(expr, lab) for lab in labels]
    want = [(lab["male"] and lab["smiling"]) or not lab["black_hair"] for lab in labels]
    assert truth == want
    assert 0.7 < np.mean(truth) < 0.9  # P = 1 - 0.25 * (1 - 0.25) = 0.8125


def test_determinism_and_arrays():
    a, la = generate("faces", 32, seed=4)
    b, lb = generate("faces", 32, seed=4)
    c, _ = generate("faces", 32, seed=5)
    assert np.array_equal(a, b) and la == lb and not np.array_equal(a, c)
    _, arr = generate("faces", 32, seed=4, as_arrays=True)
    assert arr.to_dicts() == la
    assert set(np.unique(arr.index["male"])) <= {-1, 0}


def test_domain_description():
    dom = get_domain("faces")
    assert dom.family("hair").values == ("black_hair", "blond_hair", "brown_hair", "bald")
    assert dom.family("hair").exclusive
    for b in fc.BINARY:
        assert dom.family(b).values == (b,)
    assert list(splits("faces")) == ["train"]
