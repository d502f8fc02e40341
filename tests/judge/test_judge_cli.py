"""`conceptlang judge train|eval`: the per-domain defaults reach training; eval updates a manifest."""

import json
import shutil

import pytest
from click.testing import CliRunner

import conceptlang.judge.measure as measure_mod
import conceptlang.judge.training as training_mod
from conceptlang.cli import main
from conceptlang.errors import ModelError
from conceptlang.judge.load import judges_dir
from conceptlang.judge.training import TrainConfig, default_config


def test_default_config_is_the_domain_table():
    assert default_config("scenes") == TrainConfig("scenes", 1500, batch_size=128, width=32)
    assert default_config("faces") == TrainConfig("faces", 1800, batch_size=64, width=16)
    assert default_config("faces", steps=7, seed=None) == TrainConfig("faces", 7, batch_size=64, width=16)
    with pytest.raises(ModelError, match="no judge for domain 'cars'"):
        default_config("cars")


def test_judge_train_passes_the_domain_defaults(tmp_path, monkeypatch):
    seen = []

    def fake_train(cfg, out_dir, log=print):
        seen.append((cfg, out_dir))
        return {"metrics": {"domain": cfg.domain}}

    monkeypatch.setattr(training_mod, "train_judge", fake_train)
    res = CliRunner().invoke(main, ["judge", "train", "all", "-o", str(tmp_path / "j"), "--steps", "9", "--seed", "4"])
    assert res.exit_code == 0, res.output
    assert seen == [(TrainConfig("scenes", 9, batch_size=128, seed=4, width=32), tmp_path / "j"),
                    (TrainConfig("faces", 9, batch_size=64, seed=4, width=16), tmp_path / "j")]
    res = CliRunner().invoke(main, ["judge", "train", "faces", "-o", str(tmp_path / "k")])
    assert res.exit_code == 0 and seen[-1][0] == TrainConfig("faces", 1800, batch_size=64, width=16)


def test_judge_train_needs_an_output_folder():
    res = CliRunner().invoke(main, ["judge", "train", "scenes"])
    assert res.exit_code == 2 and "--out" in res.output


def test_judge_eval_updates_only_when_asked(tmp_path, monkeypatch):
    d = tmp_path / "judges"
    shutil.copytree(judges_dir(), d)
    before = json.loads((d / "manifest.json").read_text())
    monkeypatch.setattr(measure_mod, "measure", lambda judge: {"n": 3, "domain": judge.domain})
    res = CliRunner().invoke(main, ["judge", "eval", "scenes", "--judges", str(d)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"n": 3, "domain": "scenes"}
    assert json.loads((d / "manifest.json").read_text()) == before
    res = CliRunner().invoke(main, ["judge", "eval", "scenes", "--judges", str(d), "--update"])
    assert res.exit_code == 0, res.output
    after = json.loads((d / "manifest.json").read_text())
    assert after["judges"]["scenes"]["metrics"] == {"n": 3, "domain": "scenes"}
    assert after["judges"]["faces"] == before["judges"]["faces"]


def test_judge_help_lists_the_subcommands():
    res = CliRunner().invoke(main, ["judge", "--help"])
    assert res.exit_code == 0
    assert all(name in res.output for name in ("image", "train", "eval"))
