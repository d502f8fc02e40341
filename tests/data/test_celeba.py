"""The CelebA loader on a tiny folder fabricated in the real layout."""

import numpy as np
import pytest
from PIL import Image

from conceptlang.data.celeba import CELEBA_COLUMNS, crop_resize, iter_celeba, load_celeba, read_attributes
from conceptlang.errors import DataError

# The real header has 40 names; the loader needs only the eight it maps, in any order.
NAMES = ["5_o_Clock_Shadow", "Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Gray_Hair",
         "Male", "Smiling", "Young"]


def _row(name, on):
    return name + "  " + " ".join("1" if n in on else "-1" for n in NAMES)


ROWS = [
    ("000001.jpg", {"Male", "Smiling", "Black_Hair"}, 0),
    ("000002.jpg", {"Blond_Hair", "Young"}, 0),
    ("000003.jpg", {"Eyeglasses", "Bald", "Male"}, 1),
    ("000004.jpg", {"Gray_Hair"}, 2),
]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]


def _make(root, rows=ROWS, nested=False, partition=True):
    img_dir = root / "img_align_celeba"
    if nested:
        img_dir = img_dir / "img_align_celeba"
    img_dir.mkdir(parents=True)
    for (name, _, _), rgb in zip(rows, COLOURS):
        # 178×218 like the aligned images: a coloured centre square on a grey frame.
        arr = np.full((218, 178, 3), 90, np.uint8)
        arr[109 - 70 : 109 + 70, 89 - 70 : 89 + 70] = rgb
        Image.fromarray(arr).save(img_dir / name, format="PNG")  # lossless content, .jpg name as in CelebA
    lines = [str(len(rows)), " ".join(NAMES)] + [_row(n, on) for n, on, _ in rows]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition:
        (root / "list_eval_partition.txt").write_text("\n".join(f"{n} {p}" for n, _, p in rows) + "\n")
    return root


def test_loads_records_with_faces_labels(tmp_path):
    imgs, labels = load_celeba(_make(tmp_path), image_size=32)
    assert imgs.shape == (4, 32, 32, 3) and imgs.dtype == np.uint8
    # The 140/178 centre crop is exactly the coloured square: every pixel is its colour.
    for img, rgb in zip(imgs, COLOURS):
        assert (img == rgb).all()
    a, b, c, d = labels
    assert a["male"] and a["smiling"] and a["black_hair"] and not a["young"] and a["male.male"]
    assert b["blond_hair"] and b["young"] and not b["male"] and b["hair.blond_hair"]
    assert c["eyeglasses"] and c["bald"] and c["male"]
    assert not any(d[k] for k in CELEBA_COLUMNS)  # grey hair: no hair value holds
    assert a["objects"][0]["file"] == "000001.jpg"


def test_partition_splits_and_nested_layout(tmp_path):
    root = _make(tmp_path, nested=True)
    assert [lab["objects"][0]["file"] for _, lab in iter_celeba(root, split="train")] == ["000001.jpg", "000002.jpg"]
    assert [lab["objects"][0]["file"] for _, lab in iter_celeba(root, split="valid")] == ["000003.jpg"]
    assert len(load_celeba(root, split="test")[1]) == 1
    assert len(load_celeba(root, limit=3)[1]) == 3


def test_crop_resize_geometry():
    arr = np.zeros((218, 178, 3), np.uint8)
    arr[:, 89:] = 255  # right half white
    out = crop_resize(Image.fromarray(arr), 8)
    assert out.shape == (8, 8, 3)
    assert (out[:, :4] == 0).all() and (out[:, 4:] == 255).all()


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="CelebA folder not found"):
        load_celeba(tmp_path / "nope")


def test_missing_image_dir_and_attr_file(tmp_path):
    with pytest.raises(DataError, match="no img_align_celeba"):
        load_celeba(tmp_path)
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(DataError, match="attribute file not found"):
        load_celeba(tmp_path)


def test_split_without_partition_file(tmp_path):
    root = _make(tmp_path, partition=False)
    with pytest.raises(DataError, match="list_eval_partition.txt"):
        load_celeba(root, split="train")
    with pytest.raises(DataError, match="no split 'dev'"):
        load_celeba(root, split="dev")


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda L: ["four"] + L[1:], "line 1: expected the number of images"),
        (lambda L: [L[0], L[1].replace("Smiling", "Grinning")] + L[2:], "line 2: header lacks attribute.*Smiling"),
        (lambda L: L[:3] + [L[3] + " 1"] + L[4:], "line 4: expected a file name and 10 values, got 11"),
        (lambda L: L[:2] + [L[2].replace("-1", "0", 1)] + L[3:], "line 3: attribute values must be 1 or -1, got '0'"),
        (lambda L: ["5"] + L[1:], "announces 5 images but 4"),
    ],
)
def test_malformed_attribute_file(tmp_path, edit, match):
    root = _make(tmp_path)
    path = root / "list_attr_celeba.txt"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(DataError, match=match):
        read_attributes(path)


def test_listed_image_missing_or_unreadable(tmp_path):
    root = _make(tmp_path)
    (root / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DataError, match="missing: .*000002.jpg"):
        load_celeba(root)
    (root / "img_align_celeba" / "000002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot read CelebA image .*000002.jpg"):
        load_celeba(root)
