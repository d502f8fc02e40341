"""``conceptlang sample`` / ``conceptlang explain`` end to end on the analytic Gaussian models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conceptlang.cli import main


@pytest.fixture()
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def _run(*args, input=None):
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)

    return _run


def test_sample_writes_png_and_json_sidecar(run, tmp_path):
    r = run("sample", "(red & circle) | ~large", "--models", "analytic", "-n", "12", "--steps", "40",
            "--seed", "2", "--device", "cpu", "-o", "out/s.png")
    assert r.exit_code == 0, r.output
    png, side = tmp_path / "out/s.png", tmp_path / "out/s.json"
    assert png.exists() and side.exists()
    img = np.asarray(Image.open(png))
    assert img.ndim == 3 and img.shape[2] == 3
    rec = json.loads(side.read_text())
    assert rec["expression"] == "(red & circle) | ~large" and rec["seed"] == 2 and rec["n"] == 12
    assert rec["graph"]["route"] == "dnf" and len(rec["graph"]["disjuncts"]) == 2
    assert any("grounded by the domain prior" in s for s in rec["graph"]["negations"])
    assert rec["models"] == [{"name": "gauss-joint-explicit", "domain": "gauss", "kind": "explicit",
                              "noise_conditional": False, "sha256": None}]
    assert rec["sampler"]["sampler"] == "langevin" and rec["sampler"]["steps"] == 40
    # each chain's disjunct has two leaves: 40 steps × 2 rows
    assert rec["sampler"]["score_evals"] == 40 and rec["sampler"]["nfe"] == 80
    assert sum(rec["branch_counts"]) == 12 and len(rec["branches"]) == 12
    assert rec["timing"]["sample_seconds"] > 0 and rec["judge"]["available"] is False
    # Nothing half-written is left behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s.json", "s.png"]


def test_ode_sampler_reports_network_evaluations(run, tmp_path):
    r = run("sample", "red & circle", "--models", "analytic:implicit", "-n", "6", "--sampler", "heun", "--steps", "4",
            "--device", "cpu", "-o", "h.png")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "h.json").read_text())["sampler"]
    assert rec["sampler"] == "heun" and rec["score_evals"] == 7 and rec["nfe"] == 14  # 2 leaves × (2·4 − 1)
    assert "14 network evaluations per sample" in r.output and rec["s_churn"] == 0.0
    r = run("sample", "red & circle", "--models", "analytic:implicit", "-n", "6", "--sampler", "dpmpp_2m", "--steps", "4",
            "--churn", "2.5", "--device", "cpu", "-o", "d.png")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "d.json").read_text())["sampler"]["s_churn"] == 2.5
    r = run("sample", "red", "--models", "analytic:implicit", "--sampler", "annealed", "--churn", "1", "-o", "a.png")
    assert r.exit_code == 2 and "Error: the annealed sampler has no setting(s) s_churn" in r.output  # a usage error
    assert not (tmp_path / "a.png").exists()


def test_same_seed_same_png(run, tmp_path):
    for name in ("a", "b"):
        assert run("sample", "red & circle", "--models", "analytic", "-n", "8", "--steps", "20", "--seed", "5",
                   "--device", "cpu", "-o", f"{name}.png").exit_code == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text())["image_sha256"] for n in "ab")
    assert a == b


def test_sample_options_reach_the_compiler_and_sampler(run, tmp_path):
    r = run("sample", "circle & ~large", "--models", "analytic:noise_conditional", "-n", "4", "--steps", "10",
            "--alpha", "0.3", "--sampler", "annealed", "--noise-scale", "0.5", "--step-size", "1e-5",
            "--batch-size", "3", "--per-image", "imgs", "--gif", "chain.gif", "--clip-denoised", "--restarts", "2",
            "--restart-sigma", "0.3", "--json", "-o", "x.png")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)
    assert rec["graph"]["options"]["alpha"] == 0.3
    s = rec["sampler"]
    assert (s["sampler"], s["noise_scale"], s["step_size"], s["batch_size"]) == ("annealed", 0.5, 1e-5, 3)
    assert (s["clip_denoised"], s["restarts"], s["restart_sigma"]) == (True, 2, 0.3)
    assert len(list((tmp_path / "imgs").glob("sample_*.png"))) == 4
    gif = Image.open(tmp_path / "chain.gif")
    assert gif.format == "GIF" and gif.n_frames > 2


def test_expression_from_file_and_stdin(run, tmp_path):
    (tmp_path / "e.cl").write_text("warm = red & ~large;\nwarm & circle\n")
    r = run("explain", "-f", "e.cl", "--models", "analytic")
    assert r.exit_code == 0 and "grounded by the positive part" in r.output
    r = run("explain", "-", "--models", "analytic", input="red | green")
    assert r.exit_code == 0 and "exact DNF mixture of 2" in r.output


def test_explain_text_dot_json(run):
    r = run("explain", "(red & circle) | ~large", "--models", "analytic")
    assert r.exit_code == 0
    assert "~large: no positive term beside it, so it is grounded by the domain prior" in r.output
    r = run("explain", "--dot", "circle & ~large", "--models", "analytic")
    assert r.output.startswith("digraph energy {") and "grounded by positive part" in r.output
    r = run("explain", "--json", "red | green", "--models", "analytic")
    assert json.loads(r.output)["route"] == "dnf"


@pytest.mark.parametrize("args,code,text", [
    (["sample", "red & rde", "--models", "analytic"], 2, "did you mean 'red'"),
    (["sample", "red &", "--models", "analytic"], 2, "line 1"),
    (["sample", "red & green", "--models", "analytic", "--strict"], 1, "unsatisfiable"),
    (["sample", "red", "--models", "analytic", "--sampler", "annealed"], 2, "noise-conditional"),
    (["sample", "red", "--models", "analytic", "--alpha", "2"], 2, "alpha must be in (0, 1]"),
    (["sample", "red", "--models", "analytic", "-o", "x.jpg"], 2, ".png"),
    (["sample", "--models", "analytic"], 2, "give an EXPRESSION"),
    (["explain", "red", "--models", "analytic:bogus"], 2, "analytic:KIND"),
    (["sample", "red", "--models", "analytic:noise_conditional", "--restarts", "1"], 2, "restarts=1 needs restart_sigma"),
    (["sample", "red", "--models", "analytic", "--restarts", "1", "--restart-sigma", "0.2"], 2,
     "the langevin sampler has no setting(s) restart_sigma, restarts"),
    (["sample", "red", "--models", "analytic", "--draws", "lattice"], 2, "Invalid value for '--draws'"),
])
def test_errors_are_messages_not_tracebacks(run, args, code, text):
    r = run(*args)
    assert r.exit_code == code, r.output
    assert text in r.output and "Traceback" not in r.output


def test_unsatisfiable_warns_but_samples(run, tmp_path):
    r = run("sample", "red & green", "--models", "analytic", "-n", "2", "--steps", "3", "-o", "u.png")
    assert r.exit_code == 0 and "warning:" in r.output and "unsatisfiable" in r.output
    assert json.loads((tmp_path / "u.json").read_text())["warnings"]


def test_sampling_warnings_are_printed_and_kept_in_the_sidecar(run, tmp_path):
    r = run("sample", "red", "--models", "analytic:noise_conditional", "--sampler", "langevin", "-n", "2",
            "--steps", "3", "-o", "w.png")
    assert r.exit_code == 0 and "Traceback" not in r.output and "UserWarning" not in r.output
    line = "warning: the langevin sampler runs at one noise level (sigma 0.01), starting from noise"
    assert line in r.output
    kept = json.loads((tmp_path / "w.json").read_text())["warnings"]
    assert len(kept) == 1 and kept[0].startswith(line.removeprefix("warning: "))


def test_cli_mode_choices_match_the_compiler():
    from conceptlang.cli.sample_cmds import _AND_MODES, _FREE_FAMILY_MODES, _NEGATION_MODES, _OR_MODES, _OR_WEIGHT_MODES
    from conceptlang.compiler.options import AND_MODES, FREE_FAMILY_MODES, NEGATION_MODES, OR_MODES, OR_WEIGHT_MODES

    assert (_AND_MODES, _OR_MODES, _NEGATION_MODES, _FREE_FAMILY_MODES, _OR_WEIGHT_MODES) == (
        AND_MODES, OR_MODES, NEGATION_MODES, FREE_FAMILY_MODES, OR_WEIGHT_MODES)
    from conceptlang.cli.sample_cmds import _DRAW_MODES
    from conceptlang.sampling.draws import DRAW_MODES

    assert _DRAW_MODES == DRAW_MODES


def test_explain_says_how_each_negation_was_lowered_per_mode(run):
    r = run("explain", "circle & ~red", "--models", "analytic", "--negation", "complement")
    assert r.exit_code == 0 and "~red: lowered to the complement, the mixture over color: green 0.500, blue 0.500" in r.output
    r = run("explain", "circle & ~red", "--models", "analytic", "--negation", "ratio")
    assert r.exit_code == 0 and "~red: grounded by the positive part of its conjunction, circle" in r.output
    r = run("explain", "young & ~smiling", "--free-families", "model")  # the shipped faces model
    assert r.exit_code == 0 and "~smiling: lowered to the attribute's known-absent value smiling=<none>" in r.output
    assert "leaves (1;" in r.output
    r = run("explain", "young & ~smiling")  # the shipped defaults also draw the free families
    assert r.exit_code == 0 and "free families hair, male, eyeglasses drawn as the data has them" in r.output


def test_or_weights_option_reaches_explain_and_bad_values_are_refused(run):
    r = run("explain", "red | circle", "--models", "analytic", "--or-weights", "equal")
    assert r.exit_code == 0
    assert "note: OR branches drawn in equal shares: or_weights=equal (the branches as written, log Z taken as equal)" in r.output
    r = run("explain", "red | circle", "--models", "analytic")  # the analytic models have no data frequencies
    assert r.exit_code == 0 and "equal shares: the models' registry has no data frequencies (value_shares)" in r.output
    r = run("explain", "red | circle", "--models", "analytic", "--or-weights", "prior")
    assert r.exit_code == 2 and "Invalid value for '--or-weights'" in r.output and "Traceback" not in r.output


def test_restarts_reach_the_ode_solvers(tmp_path):
    args = ["sample", "red", "--models", "analytic:noise_conditional", "--sampler", "dpmpp_2m", "--steps", "6",
            "-n", "2", "--json", "-o", str(tmp_path / "x.png")]
    plain = CliRunner().invoke(main, args)
    res = CliRunner().invoke(main, args + ["--restarts", "2", "--restart-sigma", "0.2"])
    assert plain.exit_code == 0 and res.exit_code == 0, res.output
    s, p = json.loads(res.output)["sampler"], json.loads(plain.output)["sampler"]
    assert (s["restarts"], s["restart_sigma"], s["restart_steps"]) == (2, 0.2, 1)
    assert s["score_evals"] == p["score_evals"] + 2 == 8


def test_draws_option_reaches_the_sampler_and_the_sidecar(run):
    """The scenes model draws each chain's centre of a named position from the data: spread over
    the disc by default, or independently."""
    expr = "circle & red & large & position(0.5, 0.5)"
    for flag, want in (([], "spread"), (["--draws", "independent"], "independent")):
        r = run("sample", expr, "-n", "3", "--steps", "2", "--device", "cpu", "--json", "-o", f"{want}.png", *flag)
        assert r.exit_code == 0, r.output
        rec = json.loads(r.output)["sampler"]
        assert rec["drawn"] == ["position"] and rec["draws"] == want


def test_sample_threads_sets_torch_threads_and_keeps_the_samples(run, tmp_path):
    import torch

    before = torch.get_num_threads()
    args = ("sample", "red & circle", "--models", "analytic", "-n", "4", "--steps", "10", "--seed", "3", "--device", "cpu")
    try:
        torch.set_num_threads(2)
        r = run(*args, "-o", "a.png")
        assert r.exit_code == 0, r.output
        assert torch.get_num_threads() == 2
        r = run(*args, "--threads", "1", "-o", "b.png")
        assert r.exit_code == 0, r.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    r = CliRunner().invoke(main, [*args, "--threads", "0"])
    assert r.exit_code == 2 and "Invalid value for '--threads': 0 is not in the range x>=1." in r.output
