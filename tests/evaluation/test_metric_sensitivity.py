"""benchmarks/metric_sensitivity.py: its image changes are exact, and the scenes features it probes
really are that strict (generator images 8 levels brighter fall outside the generator's manifold)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from tests.scripts import load_script


@functools.cache
def _script():
    return load_script("benchmarks/metric_sensitivity.py")


def test_offset_adds_levels_and_clips():
    x = np.array([[[[0, 100, 253]]]], dtype=np.uint8)
    out = _script().changed(x, "offset", 4.0, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.tolist() == [[[[4, 104, 255]]]]


def test_blur_keeps_a_flat_image_and_spreads_a_point():
    rng = np.random.default_rng(0)
    flat = np.full((1, 8, 8, 3), 77, np.uint8)
    assert np.array_equal(_script().changed(flat, "blur", 0.5, rng), flat)
    point = np.zeros((1, 9, 9, 3), np.uint8)
    point[0, 4, 4] = 255
    out = _script().changed(point, "blur", 1.0, rng)
    assert out[0, 4, 4, 0] < 255 and out[0, 4, 5, 0] > 0 and out[0, 4, 5, 0] == out[0, 5, 4, 0]
    assert out.dtype == np.uint8 and np.array_equal(out[..., 0], out[..., 1])  # every channel blurred alike


def test_noise_has_the_asked_spread_and_no_change_is_the_identity():
    rng = np.random.default_rng(1)
    x = np.full((4, 32, 32, 3), 128, np.uint8)
    out = _script().changed(x, "noise", 5.0, rng).astype(float)
    assert abs(out.mean() - 128) < 0.2 and abs(out.std() - math.sqrt(25 + 1 / 12)) < 0.15
    assert np.array_equal(_script().changed(x, "none", 0.0, rng), x)
    with pytest.raises(ValueError, match="unknown change"):
        _script().changed(x, "rotate", 1.0, rng)


def test_scenes_features_separate_generator_images_a_few_levels_brighter():
    from conceptlang.evaluation import distribution as D
    from conceptlang.judge.load import load_judge
    from conceptlang.syntax import parse

    judge = load_judge("scenes")
    ref = D.reference_for(parse("circle & blue"), "scenes", n_images=128, seed=4)
    a, b = ref.images[:64], ref.images[64:128]
    fa = D.judge_features(judge, a)
    scale = D.feature_scale(fa)
    as_drawn = D.precision_recall(fa / scale, D.judge_features(judge, b) / scale)[0]
    brighter = _script().changed(b, "offset", 8.0, np.random.default_rng(0))
    shifted = D.precision_recall(fa / scale, D.judge_features(judge, brighter) / scale)[0]
    assert as_drawn >= 0.85 and shifted <= 0.15
