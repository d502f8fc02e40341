"""Strong weights raise an ODE solver's registry steps (and evaluation budget) by (1 + c) / 2, where
c > 1 is the largest coefficient a chain gives a leaf other than the prior."""

from __future__ import annotations

import functools

import pytest

from conceptlang.compiler import compile
from conceptlang.models.registry import load_registry
from conceptlang.sampling import sample
from conceptlang.sampling.api import steps_for_weights, strongest_coef
from conceptlang.sampling.samplers import get_sampler


@functools.cache
def _registry():
    return load_registry(None)


def _graph(text: str):
    return compile(text, _registry())


@pytest.mark.parametrize("text,coef", [
    ("red & circle", 1.0),  # one joint leaf
    ("large & circle", 1.0),  # the calibrated size weight (1.6) adds 0.6 beside the joint leaf
    ("3 * red & square & small", 2.0),  # the red leaf's extra share: 3 - 1
    ("6 * blue & circle & large", 5.0),
    ("4 * (green & square)", 3.0),  # a weighted conjunction: its joint leaf's extra share
    ("circle | 6 * yellow", 5.0),  # the strongest over the disjuncts
    ("6 * smiling & male", 5.0),
])
def test_strongest_coef(text, coef):
    assert strongest_coef(_graph(text)) == pytest.approx(coef, abs=1e-9)


@pytest.mark.parametrize("text,steps,max_nfe,factor", [
    ("6 * blue & circle & large", 39, 120, 3.0),
    ("4 * yellow & square", 26, 80, 2.0),
    ("3 * red & square & small", 20, 60, 1.5),
    ("2 * large & circle", 21, 64, 1.6),  # the calibrated 1.6 times 2: c = 2.2
    ("2 * red & square & small", 13, 40, None),  # c = 1: the registry's steps
    ("red & circle", 13, 40, None),
])
def test_steps_scale_with_the_strongest_coefficient(text, steps, max_nfe, factor):
    s = {"steps": 13, "max_nfe": 40}
    got = steps_for_weights(_graph(text), get_sampler("dpmpp_2m_sde"), s, explicit=False)
    assert got == (None if factor is None else pytest.approx(factor, abs=1e-9))
    assert s == {"steps": steps, "max_nfe": max_nfe}


def test_steps_named_by_the_user_or_a_solver_without_a_budget_are_kept():
    g = _graph("6 * blue & circle & large")
    s = {"steps": 13, "max_nfe": 40}
    assert steps_for_weights(g, get_sampler("dpmpp_2m_sde"), s, explicit=True) is None
    assert s == {"steps": 13, "max_nfe": 40}
    s = {"steps": 40}
    assert steps_for_weights(g, get_sampler("annealed"), s, explicit=False) is None
    assert s == {"steps": 40}


def test_sample_records_the_raised_steps():
    g = _graph("6 * blue & circle & large")
    res = sample(g, 1, seed=0, device="cpu")
    assert res.settings["weight_steps"] == pytest.approx(3.0)
    assert res.settings["max_nfe"] == 120
    # the budget then bounds the steps as before: 39 asked, as many as fit in 120 rows per chain
    assert 13 < res.settings["steps"] <= 39 and res.settings["nfe"] <= 120
    explicit = sample(g, 1, seed=0, device="cpu", steps=5)
    assert explicit.settings["weight_steps"] is None and explicit.settings["steps"] == 5


@pytest.mark.parametrize("text,factor", [
    ("8 * red & square", 4.0),  # c = 7: the cap itself
    ("100 * red", 4.0),  # c = 99: capped, not 50 times the steps
    ("1e30 * red", 4.0),
])
def test_the_step_factor_is_capped(text, factor):
    s = {"steps": 13, "max_nfe": 40}
    got = steps_for_weights(_graph(text), get_sampler("dpmpp_2m_sde"), s, explicit=False)
    assert got == pytest.approx(factor, abs=1e-9)
    assert s == {"steps": 52, "max_nfe": 160}


def test_a_coefficient_beyond_float32_is_refused_before_sampling():
    from conceptlang.errors import SamplingError

    with pytest.raises(SamplingError, match=r"multiply to a coefficient of 1e\+308, beyond the 3\.4e\+38"):
        sample(_graph("1e308 * red & square"), 1, seed=0, device="cpu")
    with pytest.raises(SamplingError, match=r"coefficient of 4e\+38"):
        sample(_graph("2e19 * 2e19 * red"), 1, seed=0, device="cpu")


@pytest.mark.parametrize("text", ["2 * position(0.5, 0.5)", "position(0.5, 0.5) & position(0.5, 0.5)"])
def test_a_drawn_leaf_counts_its_own_rows_in_the_budget(text):
    # the weight's extra leaf draws each chain's place: a row of its own, not the prior's row
    res = sample(_graph(text), 2, seed=0, device="cpu")
    assert res.settings["max_nfe"] == 40
    assert res.settings["nfe"] <= 40 and res.settings["steps"] == 12
