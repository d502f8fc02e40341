"""The sampling benchmark's configurations: ``old`` is the previous default exactly, whatever the manifest adds."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest

from conceptlang.compiler import compile
from conceptlang.models.registry import load_registry
from conceptlang.sampling import sample

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def _bench():
    spec = importlib.util.spec_from_file_location("bench_sampling", ROOT / "benchmarks" / "bench_sampling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_old_config_runs_the_old_sweep_without_the_manifests_restarts():
    bench = _bench()
    label, kw = bench.parse_config("old")
    assert label == "old" and kw["sampler"] == "annealed" and kw["restarts"] == 0
    g = compile("circle", load_registry(None), domain="scenes")
    # A manifest whose solver ends with restarts (the scenes model's did): the old sweep must not inherit them.
    g.sampler_settings = {**g.sampler_settings, "restarts": 2, "restart_sigma": 0.03}
    res = sample(g, 1, seed=0, device="cpu", **{**kw, "n_sigmas": 3, "steps_per_sigma": 1})
    assert res.settings["restarts"] == 0 and res.settings["score_evals"] == 4  # 3 levels + the final denoise


@pytest.mark.parametrize("text,want", [
    ("new", {}),
    ("new:s_churn=0", {"s_churn": 0}),
    ("dpmpp_2m:13:max_nfe=40", {"sampler": "dpmpp_2m", "steps": 13, "max_nfe": 40}),
])
def test_other_configs_parse_to_their_overrides(text, want):
    assert _bench().parse_config(text) == (text, want)
