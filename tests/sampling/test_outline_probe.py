"""training/outline_probe.py: outlines read off images, and generator images re-rendered with a changed extent."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlang.compiler import compile
from conceptlang.data.scenes import PALETTE
from conceptlang.evaluation.distribution import reference_for
from conceptlang.models.registry import load_registry
from tests.scripts import load_script


@pytest.fixture(scope="module")
def probe():
    return load_script("training/outline_probe.py")


def real(expression: str, n: int = 32):
    graph = compile(expression, load_registry(None), domain="scenes")
    ref = reference_for(graph.expr, "scenes", n_images=n, seed=3, n_labels=n)
    return ref.images[:n], ref.labels[:n]


@pytest.mark.parametrize("expression", ["square & red & small", "circle & blue & large", "triangle & green"])
def test_rerender_without_change_is_the_generators_image(probe, expression):
    images, labels = real(expression)
    diff = np.abs(probe.rerender(labels, np.zeros(len(labels))).astype(int) - images.astype(int))
    # the labels keep positions to 6 decimals: a few edge pixels may round the other way
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("expression, colour, side", [("square & red & small", "red", 8.1),
                                                      ("square & cyan & large", "cyan", 13.5)])
def test_square_sides_of_generator_squares(probe, expression, colour, side):
    images, labels = real(expression)
    sides = probe.square_sides(images, np.array(PALETTE[colour]))
    assert sides.shape == (len(images), 2)
    # exact up to the rounding of the fill to whole grey levels (half a level in 225 over 14 px)
    assert np.abs(sides - side).max() < 0.005
    wider = probe.square_sides(probe.rerender(labels, np.full(len(labels), 0.1)), np.array(PALETTE[colour]))
    assert np.abs(wider - (side + 0.09)).max() < 0.01  # a square's side is 0.9 of its extent


def test_square_sides_is_nan_without_a_square(probe):
    blank = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    blank[1, 10, 10] = PALETTE["red"]  # one pixel: no row or column with covered neighbours on both sides
    assert np.isnan(probe.square_sides(blank, np.array(PALETTE["red"]))).all()
