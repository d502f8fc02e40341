"""The shared options mean the same in every command: --device defaults to auto, --json prints."""

import json

import click
from click.testing import CliRunner

import conceptlang.cli.experiment_cmds as cmds
from conceptlang.cli import main
from conceptlang.evaluation.run import JudgeCache
from tests.evaluation.fakes import PixelJudge, TemplateRegistry, install_fake_pipeline


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_device_option_defaults_to_auto_and_every_json_option_is_a_flag():
    seen_device, seen_json = [], []
    for path, cmd in _commands(main):
        for p in cmd.params:
            if "--device" in getattr(p, "opts", ()):
                assert p.default == "auto", path
                seen_device.append(path[-1])
            if "--json" in getattr(p, "opts", ()):
                assert p.is_flag, f"{' '.join(path)}: --json takes a file name"
                seen_json.append(path[-1])
    assert {"sample", "eval", "infer", "calibrate", "venn", "compare", "train"} <= set(seen_device)
    assert {"eval", "eval-merge", "venn", "compare", "parse", "image", "models"} <= set(seen_json)


def test_device_is_checked_before_anything_runs():
    r = CliRunner().invoke(main, ["sample", "red", "--device", "gpu", "-o", "x.png"])
    assert r.exit_code == 2 and "'gpu' is not a device" in r.output
    r = CliRunner().invoke(main, ["calibrate", "scenes", "--device", "cuda:x"])
    assert r.exit_code == 2 and "'cuda:x' is not a device" in r.output


def test_calibrate_needs_a_models_folder():
    r = CliRunner().invoke(main, ["calibrate", "gauss", "--models", "analytic"])
    assert r.exit_code == 2 and "--models analytic has no manifest" in r.output


def test_eval_json_prints_what_output_writes(monkeypatch, tmp_path):
    monkeypatch.setattr(cmds, "load_registry_for", lambda models: TemplateRegistry())
    monkeypatch.setattr(cmds, "_judges", lambda: JudgeCache(lambda d: PixelJudge()))
    install_fake_pipeline(monkeypatch)
    suite = tmp_path / "s.txt"
    suite.write_text("@domain toy\nA\nA & B\n")
    r = CliRunner().invoke(main, ["eval", str(suite), "-n", "4", "--json", "-o", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    assert printed == json.loads((tmp_path / "r.json").read_text())
    assert [x["expression"] for x in printed["results"]] == ["A", "A & B"]
