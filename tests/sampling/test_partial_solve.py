"""training/partial_solve.py: solves started from noised real images (the probe of where a solve leaves the data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlang.compiler import compile
from conceptlang.evaluation.distribution import reference_for
from conceptlang.models.registry import load_registry
from tests.scripts import load_script


@pytest.fixture(scope="module")
def probe():
    return load_script("training/partial_solve.py")


@pytest.fixture(scope="module")
def row():
    graph = compile("square & red & large", load_registry(None), domain="scenes")
    ref = reference_for(graph.expr, "scenes", n_images=4, seed=3, n_labels=4)
    return graph, ref.images[:4], ref.labels[:4]


def test_chains_carry_each_images_own_position(probe, row):
    graph, _, labels = row
    values = probe.chain_values(graph, labels, seed=0)
    assert list(values) == [(0, "position")]
    want = torch.tensor([[lab["objects"][0]["x"], lab["objects"][0]["y"]] for lab in labels])
    assert torch.equal(values[(0, "position")], want.to(values[(0, "position")].dtype))


def test_the_last_level_keeps_real_images_within_a_grey_level(probe, row):
    graph, images, labels = row
    torch.set_num_threads(1)
    out = probe.partial_solve(graph, images, labels, level=12, seed=0)  # σ 0.01, one evaluation
    assert out.shape == images.shape and out.dtype == np.uint8
    diff = out.astype(float) - images
    rms = float(np.sqrt((diff ** 2).mean()))
    assert 0.05 < rms < 1.0  # the denoiser changed something, and by less than a grey level r.m.s.
    assert np.array_equal(probe.partial_solve(graph, images, labels, level=12, seed=0), out)  # reproducible


def test_a_level_outside_the_schedule_is_refused(probe, row):
    graph, images, labels = row
    with pytest.raises(SystemExit, match="level 13 is not one of the schedule's 0..12"):
        probe.partial_solve(graph, images, labels, level=13, seed=0)
