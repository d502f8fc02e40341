"""`conceptlang data` writes a complete labelled data set atomically; grids split back into cells."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conceptlang.cli import main
from conceptlang.cli.judge_cmds import split_grid
from conceptlang.data import generate
from conceptlang.errors import DataError
from conceptlang.io import image_grid


def test_data_writes_pngs_labels_and_metadata(tmp_path):
    out = tmp_path / "ds"
    res = CliRunner().invoke(main, ["data", "scenes", "-n", "12", "-o", str(out), "--split", "two_objects",
                                    "--seed", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(l) for l in (out / "labels.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and len(list((out / "images").glob("*.png"))) == 12
    imgs, labels = generate("scenes", 12, seed=3, split="two_objects")
    for rec, img, lab in zip(lines, imgs, labels):
        assert rec["labels"] == json.loads(json.dumps(lab))
        assert np.array_equal(np.asarray(Image.open(out / rec["file"])), img)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["count"] == 12 and meta["split"] == "two_objects" and meta["domain"]["name"] == "scenes"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_data_chunked_writing_equals_one_shot(tmp_path):
    from conceptlang.cli.data_cmds import write_dataset

    out = write_dataset("faces", 7, tmp_path / "f", seed=2, image_size=40, chunk=3, progress=False)
    imgs, labels = generate("faces", 7, seed=2, image_size=40)
    recs = [json.loads(l) for l in (out / "labels.jsonl").read_text().splitlines()]
    for rec, img, lab in zip(recs, imgs, labels):
        assert np.array_equal(np.asarray(Image.open(out / rec["file"])), img)
        assert rec["labels"]["objects"][0]["hair"] == lab["objects"][0]["hair"]


def test_data_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = CliRunner().invoke(main, ["data", "scenes", "-n", "2", "-o", str(out), "--quiet"])
    assert res.exit_code == 1 and "not an empty directory" in res.output and "Traceback" not in res.output
    assert (out / "keep.txt").exists()
    res = CliRunner().invoke(main, ["data", "scenes", "-n", "2", "-o", str(out), "--quiet", "--force"])
    assert res.exit_code == 0 and not (out / "keep.txt").exists()


def test_data_bad_split_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(main, ["data", "faces", "-n", "2", "-o", str(tmp_path / "x"), "--split", "heldout"])
    assert res.exit_code == 2 and "faces has no split 'heldout'" in res.output


@pytest.mark.parametrize("n,ncols,scale", [(1, None, 1), (7, 3, 1), (16, None, 4)])
def test_split_grid_recovers_the_cells(n, ncols, scale):
    imgs, _ = generate("scenes", n, seed=1)
    grid = image_grid(imgs, ncols)
    if scale > 1:
        grid = grid.repeat(scale, 0).repeat(scale, 1)
    cells = split_grid(grid, 32)
    assert np.array_equal(cells, imgs)


def test_split_grid_rejects_odd_sizes():
    with pytest.raises(DataError, match="neither one 32×32 image nor a grid"):
        split_grid(np.zeros((50, 41, 3), np.uint8), 32)


def test_split_grid_accepts_an_upscaled_single_image():
    imgs, _ = generate("faces", 1, seed=2)
    big = imgs[0].repeat(4, 0).repeat(4, 1)  # what `conceptlang sample --per-image` writes
    assert np.array_equal(split_grid(big, 32), imgs)


def test_data_folder_gets_an_ordinary_mode_not_mkdtemps_0700(tmp_path):
    import os
    import stat

    from conceptlang.cli.data_cmds import write_dataset

    old = os.umask(0o022)
    try:
        out = write_dataset("scenes", 2, tmp_path / "s", seed=0, progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
