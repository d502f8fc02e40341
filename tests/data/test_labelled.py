"""Labelled folders as training data (conceptlang.data.labelled): both layouts, and every bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from conceptlang.cli.data_cmds import write_dataset
from conceptlang.data import faces as fc
from conceptlang.data import scenes as sc
from conceptlang.data.labelled import CELEBA_CROP, load_image, open_data
from conceptlang.errors import DataError

NAMES = ["5_o_Clock_Shadow", "Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Gray_Hair", "Male",
         "Smiling", "Young"]


def make_celeba(root, rows, partition=None, size=(178, 218)):
    """A CelebA root in the published layout: rows are (file, set of attributes that hold)."""
    img = root / "img_align_celeba"
    img.mkdir(parents=True)
    for k, (name, _) in enumerate(rows):
        arr = np.full((size[1], size[0], 3), 20 * k % 256, np.uint8)
        Image.fromarray(arr).save(img / name, format="PNG")
    lines = [str(len(rows)), " ".join(NAMES)]
    lines += [name + "  " + " ".join(" 1" if n in on else "-1" for n in NAMES) for name, on in rows]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition is not None:
        (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for (n, _), p in zip(rows, partition)))
    return root


ROWS = [("000001.jpg", {"Male", "Smiling", "Black_Hair"}), ("000002.jpg", {"Blond_Hair", "Young"}),
        ("000003.jpg", {"Eyeglasses", "Bald", "Male"}), ("000004.jpg", {"Gray_Hair", "Black_Hair", "Smiling"}),
        ("000005.jpg", {"Brown_Hair"})]


# ---- a `conceptlang data` folder ----------------------------------------------------------------


def test_faces_folder_labels_are_the_generators(tmp_path):
    write_dataset("faces", 12, tmp_path / "f", seed=3, progress=False)
    data = open_data(tmp_path / "f")
    truth = fc.sample_face_arrays(12, 3)
    assert [f.name for f in data.domain.families] == ["hair", "male", "smiling", "eyeglasses", "young"]
    assert data.domain.name == "faces" and data.domain.image_size == 32 and len(data) == 12
    for fam in ("hair", *fc.BINARY):
        assert np.array_equal(data.index[fam], truth.index[fam]), fam
    # at its own size an image is the PNG's pixels; at 64 px the same image, resized
    png = np.asarray(Image.open(tmp_path / "f" / "images" / "000004.png").convert("RGB"))
    assert np.array_equal(data.image(4), png)
    big = open_data(tmp_path / "f", image_size=64)
    assert big.domain.image_size == 64 and big.image(4).shape == (64, 64, 3)
    assert np.array_equal(big.image(4)[::2, ::2], png)  # box upscaling by 2 repeats each pixel


def test_two_object_scenes_folder_keeps_both_objects(tmp_path):
    write_dataset("scenes", 10, tmp_path / "s", split="two_objects", seed=1, progress=False)
    with pytest.raises(DataError, match=r"labels\.jsonl: family 'size' has a single value: every image has the value 'small'"):
        open_data(tmp_path / "s")  # the split draws small objects only
    _rewrite_labels(tmp_path / "s", lambda L: L.__setitem__(0, L[0].replace('"size": "small"', '"size": "large"', 1)))
    data = open_data(tmp_path / "s")
    truth = sc.sample_scene_arrays(10, 1, "two_objects")
    truth.index["size"][0, 0] = sc.SIZES.index("large")
    assert data.index["shape"].shape == (10, 2)
    for fam in ("shape", "color", "size"):
        assert np.array_equal(data.index[fam], truth.index[fam]), fam
    assert np.allclose(data.positions, truth.positions, atol=1e-6)


def _rewrite_labels(root, edit):
    path = root / "labels.jsonl"
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("edit, message", [
    (lambda L: L.__setitem__(2, L[2][:-5]), r"labels\.jsonl, line 3: not valid JSON"),
    (lambda L: L.__setitem__(4, json.dumps({"file": "images/nothere.png", "labels": {"objects": [{}]}})),
     r"labels\.jsonl, line 5: image images/nothere\.png is missing"),
    (lambda L: L.__setitem__(1, L[1].replace('"hair": "', '"hair": "purple_')), r"line 2: hair = 'purple_.*not one of its values"),
    (lambda L: L.__setitem__(6, L[6].replace('"smiling": ', '"smilin": ')), r"line 7: no label for family 'smiling'"),
    (lambda L: L.__setitem__(3, L[0]), r"line 4: image images/000000\.png is already listed on line 1"),
    (lambda L: L.__setitem__(5, '["a list"]'), r"line 6: expected \{\"file\""),
])
def test_bad_labels_name_file_and_line(tmp_path, edit, message):
    write_dataset("faces", 8, tmp_path / "f", seed=2, progress=False)
    _rewrite_labels(tmp_path / "f", edit)
    with pytest.raises(DataError, match=message):
        open_data(tmp_path / "f")


def test_a_family_with_a_single_value_is_refused(tmp_path):
    write_dataset("faces", 8, tmp_path / "f", seed=2, progress=False)
    _rewrite_labels(tmp_path / "f", lambda L: L.__setitem__(slice(None), [l.replace('"male": false', '"male": true') for l in L]))
    with pytest.raises(DataError, match=r"labels\.jsonl: family 'male' has a single value: every image has the value 'male'"):
        open_data(tmp_path / "f")


def test_bad_dataset_json(tmp_path):
    write_dataset("faces", 8, tmp_path / "f", seed=2, progress=False)
    meta = json.loads((tmp_path / "f" / "dataset.json").read_text())
    meta["domain"]["families"][0]["values"] = []
    (tmp_path / "f" / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"dataset\.json: family 'hair': 'values' must be distinct non-empty names"):
        open_data(tmp_path / "f")
    (tmp_path / "f" / "dataset.json").write_text('{"domain": {\n "name": "faces",,}}')
    with pytest.raises(DataError, match=r"dataset\.json, line 2: not valid JSON"):
        open_data(tmp_path / "f")


def test_unsupported_size_needs_image_size(tmp_path):
    write_dataset("faces", 8, tmp_path / "f", seed=2, image_size=40, progress=False)
    with pytest.raises(DataError, match="images are 40 px; give --image-size"):
        open_data(tmp_path / "f")
    assert open_data(tmp_path / "f", image_size=32).image(0).shape == (32, 32, 3)


def test_neither_layout(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="neither a `conceptlang data` folder"):
        open_data(tmp_path / "x")
    with pytest.raises(DataError, match="data folder not found"):
        open_data(tmp_path / "nope")


# ---- CelebA ------------------------------------------------------------------------------------


def test_celeba_attributes_become_lowercase_one_value_families(tmp_path):
    make_celeba(tmp_path / "c", ROWS)
    data = open_data(tmp_path / "c", attributes="Male,smiling,Black_Hair", image_size=32)
    assert data.domain.name == "celeba" and len(data) == 5
    assert [(f.name, f.values) for f in data.domain.families] == [("male", ("male",)), ("smiling", ("smiling",)),
                                                                    ("black_hair", ("black_hair",))]
    assert data.index["male"][:, 0].tolist() == [0, -1, 0, -1, -1]
    assert data.index["black_hair"][:, 0].tolist() == [0, -1, -1, 0, -1]
    # the centre 140/178 of the shorter side, resized: a uniform image stays uniform
    assert data.image(1).shape == (32, 32, 3) and (data.image(1) == 20).all()
    assert data.crop_fraction == CELEBA_CROP


def test_celeba_hair_family_groups_the_chosen_hair_colours(tmp_path):
    make_celeba(tmp_path / "c", ROWS)
    data = open_data(tmp_path / "c", attributes="Male,Black_Hair,Blond_Hair,Brown_Hair,Bald", group_hair=True)
    assert [f.name for f in data.domain.families] == ["male", "hair"]
    assert data.domain.family("hair").values == ("black_hair", "blond_hair", "brown_hair", "bald")
    # row 4 has black and gray hair, but gray is not chosen: black; row 3 is bald
    assert data.index["hair"][:, 0].tolist() == [0, 1, 3, 0, 2]
    make_celeba(tmp_path / "d", ROWS)
    both = open_data(tmp_path / "d", attributes="Male,Black_Hair,Gray_Hair", group_hair=True)
    assert both.index["hair"][:, 0].tolist() == [0, -1, -1, -1, -1]  # none, or several (row 4): no hair value
    with pytest.raises(DataError, match="1 of them were chosen: a family with a single value"):
        open_data(tmp_path / "c", attributes="Male,Black_Hair", group_hair=True)


def test_celeba_partition_and_bad_input(tmp_path):
    make_celeba(tmp_path / "c", ROWS, partition=[0, 0, 1, 0, 0])
    assert len(open_data(tmp_path / "c", attributes="Male,Smiling")) == 4
    assert len(open_data(tmp_path / "c", attributes="Male,Smiling", split="all")) == 5
    with pytest.raises(DataError, match=r"unknown attribute 'Smilng': .*list_attr_celeba\.txt, line 2 has no such column; "
                                         r"did you mean 'Smiling'"):
        open_data(tmp_path / "c", attributes="Male,Smilng")
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt \(4 images of split 'train'\): family 'eyeglasses' has a single value"):
        open_data(tmp_path / "c", attributes="Male,Eyeglasses")  # the only eyeglasses face is in 'valid'
    (tmp_path / "c" / "img_align_celeba" / "000004.jpg").unlink()
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt, line 6: image 000004\.jpg is missing"):
        open_data(tmp_path / "c", attributes="Male,Smiling")
    attr = tmp_path / "c" / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    attr.write_text("\n".join(lines[:4] + [lines[4].replace("-1", "0", 1)] + lines[5:]) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt, line 5: attribute values must be 1 or -1, got '0'"):
        open_data(tmp_path / "c", attributes="Male,Smiling")
    attr.write_text("\n".join(lines[:3] + [lines[3] + " 1"] + lines[4:]) + "\n")
    with pytest.raises(DataError, match=r"line 4: expected a file name and 10 values, got 11 values"):
        open_data(tmp_path / "c", attributes="Male,Smiling")


def test_load_image_crops_the_centre(tmp_path):
    arr = np.zeros((20, 10, 3), np.uint8)
    arr[5:15] = 200  # the centre 10×10 square of a 10×20 image
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert (load_image(str(tmp_path / "a.png"), 10) == 200).all()
    with pytest.raises(DataError, match="cannot read image"):
        (tmp_path / "b.png").write_bytes(b"not a png")
        load_image(str(tmp_path / "b.png"), 10)
