"""``conceptlang sample --max-nfe N``: the solvers' budget of network rows per sample, on the shipped
scenes model (registry settings: dpmpp_2m_sde, 13 steps, max_nfe 40)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from conceptlang.cli import main
from conceptlang.sampling.samplers import get_sigmas_karras

EXPR = "circle & red"  # examples/scenes_suite.txt
RESTARTS = 2  # restarts asked for on the command line, one evaluation each, counted in the budget


def rows_at(sigma: float) -> int:
    """The shipped scenes model's rows for one chain of EXPR at one level: at σ ≥ 0.3 the joint
    condition, the calibrated size leaf and the guidance prior; below, where the size weight no
    longer acts (concept_weights_above), the joint condition on the image and on its mirror image."""
    return 3 if sigma >= 0.3 else 2


def levels(n: int) -> list[float]:
    return [float(v) for v in get_sigmas_karras(10.0, 0.01, n, 7.0)[:n]]


def ode_rows(n: int) -> int:
    """Rows of n one-evaluation steps (dpmpp_2m_sde): one evaluation at each of the n levels."""
    return sum(rows_at(v) for v in levels(n))


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
    # at most 3 rows (joint condition, calibrated size leaf, prior); the bound doubles for the mirror's pass
    assert counted == 3 and rows_bound(graph) == 6
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
        ("dpmpp_2m_sde", 12, steps, steps, ode_rows(steps))
    assert s["nfe"] <= 12 and steps == 4 and ode_rows(4) == 10  # σ 10, 1.94: 3 rows; 0.23, 0.01: 2
    assert "dpmpp_2m_sde 4 steps, 10 network evaluations per sample (at most 12)" in r.output
    # heun: 2n − 1 evaluations for n steps; 2n − 1 ≤ 4 gives n = 2, 3 evaluations (σ 10, then 0.01
    # twice), 3 + 2 + 2 rows
    r = run("sample", EXPR, "-n", "2", "--sampler", "heun", "--max-nfe", "12", "--device", "cpu", "-o", "h.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "h")
    assert (s["sampler"], s["steps"], s["score_evals"], s["nfe"]) == ("heun", 2, 3, 7)
    # restarts count in the budget: 4 evaluations, 2 of them the restarts' (one each, at σ 0.03), so 2 steps
    r = run("sample", EXPR, "-n", "2", "--max-nfe", "12", "--restarts", str(RESTARTS), "--restart-sigma", "0.03",
            "--device", "cpu", "-o", "z.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "z")
    assert (s["steps"], s["restarts"], s["score_evals"], s["nfe"]) == (2, RESTARTS, 2 + RESTARTS,
                                                                       ode_rows(2) + RESTARTS * rows_at(0.03))


def test_max_nfe_caps_an_explicit_steps_and_steps_alone_override_the_registry_budget(run, tmp_path, rows):
    r = run("sample", EXPR, "-n", "2", "--steps", "20", "--max-nfe", "12", "--device", "cpu", "-o", "c.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "c")
    assert (s["max_nfe"], s["steps"], s["nfe"]) == (12, 12 // rows, ode_rows(12 // rows))
    # steps that fit the budget are kept: (1 step + 2 restarts) × at most 3 rows = 9 ≤ 12
    r = run("sample", EXPR, "-n", "1", "--steps", "1", "--max-nfe", "12", "--restarts", str(RESTARTS),
            "--restart-sigma", "0.03", "--device", "cpu", "-o", "f.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "f")
    assert (s["max_nfe"], s["steps"], s["nfe"]) == (12, 1, ode_rows(1) + RESTARTS * rows_at(0.03))
    # --steps alone: the registry's max_nfe 40 yields, 14 steps: 9 levels at 3 rows, 5 at 2: 37 rows
    r = run("sample", EXPR, "-n", "1", "--steps", "14", "--device", "cpu", "-o", "e.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "e")
    assert (s["max_nfe"], s["steps"], s["nfe"]) == (None, 14, ode_rows(14)) and ode_rows(14) == 37
    assert "dpmpp_2m_sde 14 steps, 37 network evaluations per sample, " in r.output and "at most" not in r.output


def test_a_budget_below_one_step_runs_one_step_and_says_so(run, tmp_path, rows):
    # one step (its one evaluation at σ_min) costs 2 rows: a budget of 1 cannot hold it, so one step
    # runs and a warning says why
    r = run("sample", EXPR, "-n", "1", "--max-nfe", "1", "--device", "cpu", "-o", "o.png")
    assert r.exit_code == 0, r.output
    s = _sampler_record(tmp_path, "o")
    assert (s["max_nfe"], s["steps"], s["nfe"]) == (1, 1, ode_rows(1)) and ode_rows(1) == 2
    assert "warning: 2 network evaluations per sample, above max_nfe 1: one step of this graph costs more" in r.output
    r = run("sample", EXPR, "-n", "1", "--max-nfe", "2", "--device", "cpu", "-o", "p.png")
    assert r.exit_code == 0 and "above max_nfe" not in r.output


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
