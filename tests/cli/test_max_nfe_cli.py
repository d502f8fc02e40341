"""``conceptlang sample --max-nfe N``: the solvers' budget of network rows per sample, on the shipped
scenes model (registry settings: dpmpp_2m_sde, 13 steps, max_nfe 40)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from conceptlang.cli import main

EXPR = "circle & red"  # examples/scenes_suite.txt
RESTARTS = 2  # restarts asked for on the command line, one evaluation each, counted in the budget


@pytest.fixture()
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def _run(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return _run


@pytest.fixture(scope="module")
def rows():
    """Network rows one composed-score evaluation of EXPR costs a chain, counted in the shipped models."""
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.models.registry import load_registry
    from conceptlang.sampling.api import rows_bound, rows_per_evaluation

    graph = compile_expr(EXPR, load_registry())
    counted = rows_per_evaluation(graph, dict(graph.sampler_settings), torch.device("cpu"))
    assert rows_bound(graph) == counted == 3  # joint condition, calibrated size leaf, prior (the null row)
    assert graph.sampler_settings["sampler"] == "dpmpp_2m_sde" and "restarts" not in graph.sampler_settings
    return counted


def _sampler_record(tmp_path, name):
    return json.loads((tmp_path / f"{name}.json").read_text())["sampler"]


def test_max_nfe_caps_the_registry_steps(run, tmp_path, rows):
    r = run("sample", EXPR, "-n", "2", "--max-nfe", "12", "--device", "cpu", "-o", "a.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "a")
    # dpmpp_2m_sde: one evaluation per step; 12 // 3 = 4 evaluations, so 4 steps of the registry's 13
    steps = 12 // rows
    assert (s["sampler"], s["max_nfe"], s["steps"], s["score_evals"], s["nfe"]) == \
        ("dpmpp_2m_sde", 12, steps, steps, steps * rows)
    assert s["nfe"] <= 12 and steps == 4
    assert "dpmpp_2m_sde 4 steps, 12 network evaluations per sample (at most 12)" in r.output
    # heun: 2n − 1 evaluations for n steps; 2n − 1 ≤ 4 gives n = 2, 3 evaluations, 9 rows
    r = run("sample", EXPR, "-n", "2", "--sampler", "heun", "--max-nfe", "12", "--device", "cpu", "-o", "h.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "h")
    assert (s["sampler"], s["steps"], s["score_evals"], s["nfe"]) == ("heun", 2, 3, 3 * rows)
    # restarts count in the budget: 4 evaluations, 2 of them the restarts' (one each), so 2 steps
    r = run("sample", EXPR, "-n", "2", "--max-nfe", "12", "--restarts", str(RESTARTS), "--restart-sigma", "0.03",
            "--device", "cpu", "-o", "z.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "z")
    assert (s["steps"], s["restarts"], s["score_evals"], s["nfe"]) == (2, RESTARTS, 2 + RESTARTS, 12)


def test_max_nfe_caps_an_explicit_steps_and_steps_alone_override_the_registry_budget(run, tmp_path, rows):
    r = run("sample", EXPR, "-n", "2", "--steps", "20", "--max-nfe", "12", "--device", "cpu", "-o", "c.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "c")
    assert (s["max_nfe"], s["steps"], s["nfe"]) == (12, 12 // rows, 12)
    # steps that fit the budget are kept: (1 step + 2 restarts) × 3 rows = 9 ≤ 12
    r = run("sample", EXPR, "-n", "1", "--steps", "1", "--max-nfe", "12", "--restarts", str(RESTARTS),
            "--restart-sigma", "0.03", "--device", "cpu", "-o", "f.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "f")
    assert (s["max_nfe"], s["steps"], s["nfe"]) == (12, 1, (1 + RESTARTS) * rows)
    # --steps alone: the registry's max_nfe 40 yields, 14 steps × 3 rows = 42 rows
    r = run("sample", EXPR, "-n", "1", "--steps", "14", "--device", "cpu", "-o", "e.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "e")
    assert (s["max_nfe"], s["steps"], s["nfe"]) == (None, 14, 14 * rows)
    assert "dpmpp_2m_sde 14 steps, 42 network evaluations per sample, " in r.output and "at most" not in r.output


@pytest.mark.parametrize("value,text", [
    ("0", "Invalid value for '--max-nfe': 0 is not in the range x>=1"),
    ("-4", "Invalid value for '--max-nfe': -4 is not in the range x>=1"),
    ("1.5", "Invalid value for '--max-nfe': '1.5' is not a valid integer"),
    ("many", "Invalid value for '--max-nfe': 'many' is not a valid integer"),
])
def test_bad_max_nfe_is_a_usage_error(run, tmp_path, value, text):
    r = run("sample", EXPR, "-n", "1", "--max-nfe", value, "-o", "x.png")
    assert r.exit_code == 2 and text in r.output and "Traceback" not in r.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args,name", [
    (["--models", "analytic:noise_conditional", "--sampler", "annealed"], "annealed"),
    (["--models", "analytic:noise_conditional"], "annealed"),  # the default sampler of noise-conditional models
    (["--models", "analytic"], "langevin"),
    (["--models", "analytic", "--sampler", "mala"], "mala"),
    (["--sampler", "annealed"], "annealed"),  # the shipped scenes model, the registry's budget set
])
def test_max_nfe_with_a_sampler_without_a_budget_is_a_usage_error(run, tmp_path, args, name):
    expr = EXPR if "--models" not in args else "red"
    r = run("sample", expr, "-n", "1", "--max-nfe", "12", *args, "-o", "x.png")
    assert r.exit_code == 2, r.output
    assert (f"--max-nfe: the {name} sampler has no setting max_nfe (a budget of network evaluations per sample); "
            "the samplers with one are heun, dpmpp_2m, dpmpp_2m_sde, dpmpp_3m") in r.output and "Traceback" not in r.output
    assert not list(tmp_path.iterdir())


def test_eta_reaches_the_sde_solver_and_is_checked(run):
    r = run("sample", "red", "--models", "analytic:implicit", "--sampler", "dpmpp_2m_sde", "--eta", "0.5", "--steps", "6",
            "-n", "3", "--device", "cpu", "-o", "x.png")
    assert r.exit_code == 0, r.output
    side = json.load(open("x.json"))
    assert side["sampler"]["sampler"] == "dpmpp_2m_sde" and side["sampler"]["eta"] == 0.5
    assert side["sampler"]["steps"] == 6 and side["sampler"]["nfe"] == 6
    r = run("sample", "red", "--models", "analytic:implicit", "--sampler", "dpmpp_2m_sde", "--eta", "-1", "-o", "y.png")
    assert r.exit_code == 2 and "--eta" in r.output and "Traceback" not in r.output
    r = run("sample", "red", "--models", "analytic:implicit", "--sampler", "heun", "--eta", "1", "--device", "cpu", "-o", "z.png")
    assert r.exit_code != 0 and "the heun sampler has no setting(s) eta" in r.output and "Traceback" not in r.output
    r = run("sample", "red", "--models", "analytic:implicit", "--sampler", "dpmpp_2m_sde", "--eta", "2",
            "--eta-sigma-min", "0.3", "--steps", "6", "-n", "3", "--device", "cpu", "-o", "w.png")
    assert r.exit_code == 0, r.output
    side = json.load(open("w.json"))
    assert (side["sampler"]["eta"], side["sampler"]["eta_sigma_min"]) == (2.0, 0.3)
    r = run("sample", "red", "--models", "analytic:implicit", "--sampler", "dpmpp_2m_sde", "--eta-sigma-min", "-1",
            "-o", "v.png")
    assert r.exit_code == 2 and "--eta-sigma-min" in r.output and "Traceback" not in r.output


def test_s_noise_reaches_the_solvers_and_is_checked(run):
    base = ["--models", "analytic:implicit", "--sampler", "dpmpp_2m_sde", "--steps", "6", "-n", "64", "--seed", "2",
            "--device", "cpu"]
    r = run("sample", "red", *base, "--s-noise", "0.5", "-o", "cold.png")
    assert r.exit_code == 0, r.output
    assert json.load(open("cold.json"))["sampler"]["s_noise"] == 0.5
    r = run("sample", "red", *base, "-o", "full.png")
    assert r.exit_code == 0 and json.load(open("full.json"))["sampler"]["s_noise"] == 1.0
    assert open("cold.png", "rb").read() != open("full.png", "rb").read()
    r = run("sample", "red", *base, "--s-noise", "-0.1", "-o", "bad.png")
    assert r.exit_code == 2 and "--s-noise" in r.output and "Traceback" not in r.output
    r = run("sample", "red", "--models", "analytic", "--sampler", "langevin", "--s-noise", "0.5", "--device", "cpu",
            "-o", "l.png")
    assert r.exit_code != 0 and "the langevin sampler has no setting(s) s_noise" in r.output and "Traceback" not in r.output
