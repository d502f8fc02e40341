"""``explain`` says how each guided model samples: its weight, noise interval and prior's levels."""

from __future__ import annotations

from conceptlang.compiler import compile as compile_expr
from conceptlang.compiler.explain import _guidance_text
from conceptlang.models.analytic import GaussianRegistry
from conceptlang.models.registry import load_registry

SCENES = ("scenes-joint: w = 2 at 0.3 ≤ σ ≤ 100 (the plain conditional outside); below σ 0.03 its color "
          "condition alone, unguided; below σ 0.3 averaged with its mirror image (position.x reflected), "
          "circle/square shape rows turned a quarter or flipped up-down by octave of σ; energies (infer) w = 5")


def test_the_shipped_models_guidance_is_listed_from_their_manifests():
    reg = load_registry()
    lines = compile_expr("circle & red", reg).explain().splitlines()
    assert lines[3] == "sampling guidance: " + SCENES
    assert ("note: the calibrated concept weights act at noise levels σ ≥ 0.3 (the models' manifest's "
            "concept_weights_above); below, concepts score as written") in lines
    faces = compile_expr("smiling", reg).explain().splitlines()
    assert faces[3] == "sampling guidance: faces-joint: w = 5 at 0.1 ≤ σ ≤ 1 (the plain conditional outside)"
    # the loaded model says the same as its manifest entry
    assert _guidance_text(reg.handles["scenes-joint"].impl("cpu")) == SCENES


def test_models_without_guidance_get_no_line():
    text = compile_expr("red & circle", GaussianRegistry("implicit")).explain()
    assert "sampling guidance" not in text
