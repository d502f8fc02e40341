"""The judge of a labelled folder: training, its validity tests, loading, and `eval --judge`."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conceptlang.cli import main
from conceptlang.cli.data_cmds import write_dataset
from conceptlang.errors import ModelError
from conceptlang.judge.labelled import BANK_SIZE, corrupt, judge_loader, train_labelled_judge


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    root = tmp_path_factory.mktemp("lj")
    write_dataset("faces", 60, root / "f", seed=7, progress=False)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    entry = train_labelled_judge(root / "f", root / "J", steps=30, batch_size=16, bank=40, workers=0, log=lambda m: None)
    torch.set_num_threads(old)
    return root, entry


def test_entry_and_loading(judged):
    root, entry = judged
    assert entry["kind"] == "labelled" and entry["domain"] == "faces"
    assert [f["name"] for f in entry["families"]] == ["hair", "male", "smiling", "eyeglasses", "young"]
    assert entry["families"][0] == {"name": "hair", "values": ["black_hair", "blond_hair", "brown_hair", "bald"], "none": False}
    assert entry["training"]["held_out"] == 6 and entry["training"]["bank"] == 40
    assert entry["metrics"]["n"] == 3  # thresholds set on 3 held-out images, measured on the other 3
    manifest = json.loads((root / "J" / "manifest.json").read_text())
    assert manifest["judges"]["faces"]["sha256"] == entry["sha256"]
    judge = judge_loader(root / "J")("faces")
    assert judge.thresholds == entry["thresholds"]
    with pytest.raises(ModelError, match="has no judge for domain 'scenes'"):
        judge_loader(root / "J")("scenes")


def test_labels_and_validity(judged):
    from conceptlang.data import generate

    root, _ = judged
    judge = judge_loader(root / "J")("faces")
    images, _ = generate("faces", 6, seed=99)
    pred, conf = judge.predict(images)
    labels = judge.labels(images)
    for i, lab in enumerate(labels):
        hair = judge.families[0]["values"][pred["hair"][i]]
        assert lab["hair.black_hair"] == lab["black_hair"] == (hair == "black_hair")
        assert lab["objects"][0]["hair"] == hair
        assert lab["male"] == (pred["male"][i] == 0) == lab["objects"][0]["male"]
    # the distance is the RMS pixel distance at 16×16 to the nearest bank image: a bank image is at 0
    bank = judge.bank.numpy().reshape(-1, BANK_SIZE, BANK_SIZE, 3).astype(np.uint8)
    assert np.allclose(judge.distances(bank[:3]), 0.0, atol=1e-2)
    x = bank[:1].astype(np.float32) + 10.0
    near = np.clip(x, 0, 255).astype(np.uint8)
    manual = np.sqrt(((near.reshape(1, -1).astype(np.float64) - judge.bank.numpy().astype(np.float64)) ** 2).mean(1)).min()
    assert judge.distances(near)[0] == pytest.approx(manual, rel=1e-4)
    # pure noise is far from every face
    noise = corrupt(images, seed=0)["uniform noise"]
    assert not judge.valid(noise).any()
    assert all("far from every real image" in r for r in judge.reasons(noise))
    assert judge.features(images).shape == (6, 128)
    ok = judge.valid(images)
    assert ok.shape == (6,) and ok.dtype == bool
    assert np.array_equal(ok, (conf >= judge.thresholds["confidence"]) & (judge.distances(images) <= judge.thresholds["distance"]))


def test_cli_judge_train_data_and_eval_judge(tmp_path):
    write_dataset("faces", 30, tmp_path / "f", seed=8, progress=False)
    res = CliRunner().invoke(main, ["judge", "train", "--data", str(tmp_path / "f"), "-o", str(tmp_path / "J"),
                                    "--steps", "5", "--data-workers", "0"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)["accuracy"]) == {"hair", "male", "smiling", "eyeglasses", "young"}
    res = CliRunner().invoke(main, ["judge", "train", "faces", "--data", str(tmp_path / "f"), "-o", str(tmp_path / "J")])
    assert res.exit_code == 2 and "not both" in res.output
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "f"), "--iters", "2", "--batch-size", "4",
                                    "--widths", "8,16", "--data-workers", "0", "--out", str(run), "--quiet", "--threads", "1"])
    assert res.exit_code == 0, res.output
    (tmp_path / "suite.txt").write_text("smiling\n")
    res = CliRunner().invoke(main, ["eval", str(tmp_path / "suite.txt"), "--models", str(run), "--judge", str(tmp_path / "J"),
                                    "-n", "2", "--device", "cpu", "-o", str(tmp_path / "r.json"), "--threads", "1"])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "r.json").read_text())
    (row,) = result["results"]
    assert row["expression"] == "smiling" and row["n"] == 2 and row["valid"]["trials"] == 2
    # the folder's judge ran (the shipped faces judge gives other reasons); two iterations make noise
    assert row["invalid_reasons"].get("far from every real image") == 2
