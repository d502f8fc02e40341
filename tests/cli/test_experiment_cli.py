"""eval / infer / figure venn through the CLI, on exact fakes (no trained models needed)."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import conceptlang.cli.experiment_cmds as cmds
from conceptlang.cli import main
from conceptlang.evaluation.run import JudgeCache
from tests.evaluation.fakes import PixelJudge, TemplateRegistry, install_fake_pipeline, render


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(cmds, "load_registry_for", lambda models: TemplateRegistry())
    monkeypatch.setattr(cmds, "_judges", lambda: JudgeCache(lambda d: PixelJudge()))
    return install_fake_pipeline(monkeypatch)


@pytest.mark.parametrize("cmd", [["eval"], ["eval-merge"], ["infer"], ["figure", "venn"]])
def test_help(cmd):
    r = CliRunner().invoke(main, [*cmd, "--help"])
    assert r.exit_code == 0 and "Usage" in r.output


def test_eval_writes_tables_and_json(fakes, tmp_path):
    suite = tmp_path / "s.txt"
    suite.write_text("@domain toy\nA\n[x]\nA & B\nA | B\n")
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["eval", str(suite), "-n", "8", "--seed", "2", "-o", str(out),
                                  "--grids", str(tmp_path / "g"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "| `A & B` | and | 2 | x | 1.00 | 1.00 [0.68, 1.00] | ≥ 0.90 ✓ |" in r.output
    data = json.loads(out.read_text())
    assert [x["expression"] for x in data["results"]] == ["A", "A & B", "A | B"]
    assert data["n"] == 8 and data["seed"] == 2
    assert {c[1] for c in fakes} == {8}
    assert len(list((tmp_path / "g").glob("*.png"))) == 3


def test_eval_merge_pools_split_runs(fakes, tmp_path):
    parts = {"p1": "@domain toy\nA | B\n", "p2": "@domain toy\nA & B\nA\n"}
    for name, text in parts.items():
        (tmp_path / f"{name}.txt").write_text(text)
        r = CliRunner().invoke(main, ["eval", str(tmp_path / f"{name}.txt"), "-n", "8", "--seed", "2",
                                      "-o", str(tmp_path / f"{name}.json"), "--device", "cpu"])
        assert r.exit_code == 0, r.output
    suite = tmp_path / "s.txt"
    suite.write_text("@domain toy\nA\n[x]\nA & B\nA | B\n")
    out, md = tmp_path / "all.json", tmp_path / "all.md"
    r = CliRunner().invoke(main, ["eval-merge", str(tmp_path / "p1.json"), str(tmp_path / "p2.json"),
                                  "--suite", str(suite), "--title", "pooled", "-o", str(out), "--markdown", str(md)])
    assert r.exit_code == 0, r.output
    assert "## pooled" in r.output and "3 expressions, n = 8 samples each, base seed 2" in r.output
    assert "| `A & B` | and | 2 | x | 1.00 | 1.00 [0.68, 1.00] | ≥ 0.90 ✓ |" in r.output
    assert md.read_text() == r.output.rstrip("\n") + "\n"
    data = json.loads(out.read_text())
    assert [x["expression"] for x in data["results"]] == ["A", "A & B", "A | B"]
    assert data["summary"]["operator"]["and"]["accuracy"]["trials"] == 8


def test_eval_merge_bad_parts_exit_2(fakes, tmp_path):
    (tmp_path / "s.txt").write_text("@domain toy\nA\n")
    for n, name in ((8, "a"), (4, "b")):
        r = CliRunner().invoke(main, ["eval", str(tmp_path / "s.txt"), "-n", str(n), "-o", str(tmp_path / f"{name}.json")])
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["eval-merge", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert r.exit_code == 2 and "b.json: n = 4, base seed 0 differ" in r.output and "Traceback" not in r.output
    (tmp_path / "bad.json").write_text("{not json")
    r = CliRunner().invoke(main, ["eval-merge", str(tmp_path / "bad.json")])
    assert r.exit_code == 2 and "bad.json: cannot read JSON" in r.output


def test_eval_bad_suite_exits_2_without_traceback(fakes, tmp_path):
    suite = tmp_path / "s.txt"
    suite.write_text("A\nA & & B\n")
    r = CliRunner().invoke(main, ["eval", str(suite)])
    assert r.exit_code == 2
    assert "line 2" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "missing.txt")])
    assert r.exit_code == 2 and "not found" in r.output


def test_eval_reports_failed_expressions_with_exit_1(fakes, monkeypatch, tmp_path):
    import conceptlang.compiler as compiler_pkg
    from conceptlang.errors import CompileError

    def bad(expr, registry, **kw):
        raise CompileError("boom")

    monkeypatch.setattr(compiler_pkg, "compile", bad)
    suite = tmp_path / "s.txt"
    suite.write_text("A\n")
    r = CliRunner().invoke(main, ["eval", str(suite), "-n", "2"])
    assert r.exit_code == 1 and "failed: CompileError: boom" in r.output
    r = CliRunner().invoke(main, ["eval", str(suite), "-n", "2", "--fail-fast"])
    assert r.exit_code == 1 and "error: boom" in r.output


def test_infer_prints_labels_and_json(fakes, tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(render("green", 0.3, 0.6)).save(path)
    r = CliRunner().invoke(main, ["infer", str(path), "--domain", "toy"])
    assert r.exit_code == 0, r.output
    assert "color: green" in r.output and re.search(r"position: \(0\.(29|30)\d, 0\.(59|60)\d\)", r.output)
    r = CliRunner().invoke(main, ["infer", str(path), "--domain", "toy", "--json"])
    data = json.loads(r.output)
    assert data["families"]["color"]["value"] == "green"
    x, y = data["families"]["position"]["value"]
    assert abs(x - 0.3) < 0.01 and abs(y - 0.6) < 0.01


def test_infer_rejects_unreadable_and_wrong_size_images(fakes, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    r = CliRunner().invoke(main, ["infer", str(bad), "--domain", "toy"])
    assert r.exit_code == 1 and "cannot read image" in r.output and "Traceback" not in r.output
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(small)
    r = CliRunner().invoke(main, ["infer", str(small), "--domain", "toy"])
    assert r.exit_code == 1 and "takes 3×16×16" in r.output
    r = CliRunner().invoke(main, ["infer", str(small), "--domain", "tov"])  # a domain the models lack: usage
    assert r.exit_code == 2 and "Error: Invalid value for '--domain': no models for domain 'tov'" in r.output


def test_figure_venn(fakes, tmp_path):
    out = tmp_path / "venn.png"
    r = CliRunner().invoke(main, ["figure", "venn", "A", "B", "-o", str(out), "-n", "4"])
    assert r.exit_code == 0, r.output
    assert out.exists() and Image.open(out).size[0] > 400
    assert "| `A & ~B` |" in r.output and f"wrote {out}" in r.stdout
    r = CliRunner().invoke(main, ["figure", "venn", "A", "B", "-o", str(out), "-n", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["regions"]) == 8 and f"wrote {out}" in r.stderr  # stdout: the JSON only


@pytest.mark.parametrize("concepts", [["A"], ["A", "B", "C", "D"]])
def test_figure_venn_needs_two_or_three(fakes, tmp_path, concepts):
    r = CliRunner().invoke(main, ["figure", "venn", *concepts, "-o", str(tmp_path / "v.png")])
    assert r.exit_code == 2 and "2 or 3 concepts" in r.output


@pytest.fixture
def generator_samples(monkeypatch):
    """compile/sample fakes on the scenes domain whose "samples" are generator images satisfying the text."""
    from types import SimpleNamespace

    import torch

    import conceptlang.compiler as compiler_pkg
    import conceptlang.sampling as sampling_pkg
    from conceptlang.evaluation.distribution import reference_for

    monkeypatch.setattr(compiler_pkg, "compile", lambda expr, registry, **kw: SimpleNamespace(expr=expr, domain="scenes"),
                        raising=False)

    def fake_sample(graph, n, seed=0, device="auto", **kw):
        imgs = reference_for(graph.expr, "scenes", n_images=n, seed=seed + 99, n_labels=n).images[:n]
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return SimpleNamespace(images=x, settings={}, seconds=0.0, branches=None)

    monkeypatch.setattr(sampling_pkg, "sample", fake_sample, raising=False)
    monkeypatch.setattr(cmds, "load_registry_for", lambda models: None)


def test_eval_distribution_table_json_and_merge(generator_samples, tmp_path):
    suite = tmp_path / "s.txt"
    suite.write_text("@domain scenes\nsquare & ~yellow\n")
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["eval", str(suite), "-n", "24", "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "Distribution of the samples:" in r.output
    row = re.search(r"^\| `square & ~yellow` \| (\d+)/24 \| [0-9.]+ \| [0-9.]+ \([0-9.]+\) \| color [0-9.]+; size [0-9.]+; "
                    r"position [0-9.]+ \| ([0-9.]+) \(", r.output, re.M)
    assert row and int(row.group(1)) >= 22 and float(row.group(2)) >= 0.8, r.output
    data = json.loads(out.read_text())
    d = data["results"][0]["distribution"]
    assert d["n_samples"] == 24 and d["n_real"] == 24 and [f["family"] for f in d["fidelity"]] == ["color", "size", "position"]
    assert d["fidelity"][0]["reference"].keys() == {"red", "green", "blue", "purple", "cyan"}
    assert data["distribution"]["expressions"] == 1 and data["distribution"]["tv_worst"]["expression"] == "square & ~yellow"
    merged = CliRunner().invoke(main, ["eval-merge", str(out)])
    assert merged.exit_code == 0 and row.group(0) in merged.output
    plain = CliRunner().invoke(main, ["eval", str(suite), "-n", "8", "--no-distribution", "-o", str(out), "--device", "cpu"])
    assert plain.exit_code == 0 and "Distribution" not in plain.output
    assert json.loads(out.read_text())["results"][0]["distribution"] is None


def test_figure_compare_writes_samples_beside_generator_data(generator_samples, tmp_path):
    out = tmp_path / "c.png"
    r = CliRunner().invoke(main, ["figure", "compare", "square & ~yellow", "red | blue", "-n", "8", "--show", "4",
                                  "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "| `square & ~yellow` | " in r.output and "| `red \\| blue` | " in r.output and f"wrote {out}" in r.output
    w, h = Image.open(out).size
    assert (w, h) == (300 + 282 + 16 + 282 + 8, 26 + 2 * 76)  # two rows of 4 samples | 4 generator images
    r = CliRunner().invoke(main, ["figure", "compare", "square & ~yellow", "red | blue", "-n", "8", "--show", "4",
                                  "-o", str(out), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [x["expression"] for x in data["results"]] == ["square & ~yellow", "red | blue"]
    assert all(x["distribution"]["n_samples"] == 8 for x in data["results"])
    bad = CliRunner().invoke(main, ["figure", "compare", "square &", "-o", str(out)])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_infer_reranks_in_context_unless_told_not_to(monkeypatch, tmp_path):
    """A joint hook whose re-ranking condition swaps colours (green is scored by red's candidate):
    the default re-ranks under the inferred position and reports it; --no-rerank keeps the marginal."""
    reg = TemplateRegistry()
    swap = {"red": "green", "green": "blue", "blue": "red"}

    def joint(refs):
        last = refs[-1]
        if last.family == "position":
            return reg.model_for(last)
        return (reg.models["color"], {"color": swap[last.value]}) if last.family == "color" else None

    reg.joint = joint
    monkeypatch.setattr(cmds, "load_registry_for", lambda models: reg)
    path = tmp_path / "img.png"
    Image.fromarray(render("green", 0.3, 0.6)).save(path)
    r = CliRunner().invoke(main, ["infer", str(path), "--domain", "toy", "--json"])
    assert r.exit_code == 0, r.output
    fam = json.loads(r.output)["families"]["color"]
    assert (fam["value"], fam["readout"]) == ("red", "in context")
    r = CliRunner().invoke(main, ["infer", str(path), "--domain", "toy", "--json", "--no-rerank"])
    fam = json.loads(r.output)["families"]["color"]
    assert (fam["value"], fam["readout"]) == ("green", "energy")
