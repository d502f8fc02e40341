"""The data-weighted OR samples the exact mixture Σ_c p(c | A ∨ B) p(x | c) on analytic Gaussians."""

from __future__ import annotations

import math

import pytest

from conceptlang.compiler import compile
from conceptlang.models.analytic import GAUSS_CONCEPTS, product_of
from conceptlang.sampling import sample
from tests.compiler.fakes import TableSharesRegistry
from tests.sampling.gauss_helpers import mean_tolerance

N = 8000


def test_red_or_circle_samples_the_data_weighted_disjoint_mixture():
    # red | circle over TableSharesRegistry.TABLE: red&circle .2, red&square .4, green&circle .3,
    # blue&circle .1 (of P(red ∨ circle) = .5); with and_mode="sum" each branch is the product of its
    # two Gaussians, so the mixture's components and its mean are closed forms.
    graph = compile("red | circle", TableSharesRegistry("explicit"))
    want = {("red", "circle"): 0.2, ("red", "square"): 0.4, ("green", "circle"): 0.3, ("blue", "circle"): 0.1}
    res = sample(graph, N, seed=6, sampler="mala", steps=300, step_size=4e-3, device="cpu")
    x = res.images.reshape(N, 2).double()
    counts = res.branch_counts
    mix_mean = [0.0, 0.0]
    for k, d in enumerate(graph.disjuncts):
        color, shape = (part.split(".")[1] for part in d.text.split(" & "))
        w = want[(color, shape)]
        assert d.share == pytest.approx(w, abs=1e-12)
        assert abs(counts[k] - w * N) <= 1  # stratified branch draws
        (mx, my), var = product_of([(1.0, GAUSS_CONCEPTS["color"][color]), (1.0, GAUSS_CONCEPTS["shape"][shape])])
        got = x[res.branches == k]
        tol = mean_tolerance(var, len(got))
        assert abs(float(got[:, 0].mean()) - mx) < tol and abs(float(got[:, 1].mean()) - my) < tol
        assert float(got.var(0).mean()) / var == pytest.approx(1.0, abs=5 * math.sqrt(2 / len(got)))
        mix_mean[0] += w * mx
        mix_mean[1] += w * my
    # the whole sample's mean is the data-weighted mixture's (equal shares would put it elsewhere)
    for j in range(2):
        assert abs(float(x[:, j].mean()) - mix_mean[j]) < 0.01
    assert res.settings["log_z"] == "data: each OR branch by its probability in the data (or_weights=data)"
    equal = compile("red | circle", TableSharesRegistry("explicit"), or_weights="equal")
    assert sorted(d.share for d in equal.disjuncts) == [0.5, 0.5]
    got = sample(equal, 4, seed=0, sampler="mala", steps=2, step_size=4e-3, device="cpu")
    assert got.settings["log_z"] == "assumed equal" and got.settings["shares"] == [0.5, 0.5]
