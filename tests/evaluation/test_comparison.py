"""Samples beside generator data: layout of the strips, exact pixels."""

import numpy as np

from conceptlang.evaluation.comparison import comparison_sheet, reference_images, side_by_side
from conceptlang.evaluation.grids import GAP
from conceptlang.evaluation.results import ExpressionResult
from conceptlang.evaluation.stats import Proportion


def test_side_by_side_places_both_images_top_aligned():
    a = np.full((3, 2, 3), 10, np.uint8)
    b = np.full((5, 4, 3), 20, np.uint8)
    out = side_by_side(a, b, gap=1)
    assert out.shape == (5, 7, 3)
    assert (out[:3, :2] == 10).all() and (out[3:, :2] == GAP).all() and (out[:, 2] == GAP).all()
    assert (out[:, 3:] == 20).all()


def _result(text, images, domain="scenes"):
    n = len(images)
    return ExpressionResult(name=text, text=text, operator="not", n_concepts=2, tags=(), domain=domain, seed=0, n=n,
                            valid=Proportion(n, n), satisfied=Proportion(n, n), accuracy=Proportion(n, n),
                            per_sample={"valid": [True] * n, "satisfied": [True] * n}, images=images)


def test_sheet_shows_samples_then_generator_images_satisfying_the_expression():
    from conceptlang.evaluation.distribution import reference_for, reference_seed
    from conceptlang.evaluation.suites import parse_entry_text

    samples = np.zeros((4, 32, 32, 3), np.uint8)  # black: no object
    r = _result("square & ~yellow", samples)
    real = reference_images(r, 4, base_seed=3)
    expected = reference_for(parse_entry_text(r.text), "scenes", n_images=4, seed=reference_seed(r.text, 3), n_labels=4)
    assert np.array_equal(real, expected.images[:4])
    sheet = comparison_sheet([r], show=4, base_seed=3)
    # rows: the 72-px strip + 4; label column 300 px, two strips of 4 framed 64-px images (68 + 2 px each, 2 px outer gap): 282 px each
    assert sheet.shape == (26 + 76, 300 + 282 + 16 + 282 + 8, 3)
    left = sheet[26 + 4 : 26 + 4 + 64, 300 + 4 : 300 + 4 + 64]
    right = sheet[26 + 4 : 26 + 4 + 64, 300 + 282 + 16 + 4 : 300 + 282 + 16 + 4 + 64]
    assert (left == 0).all()
    assert np.array_equal(right, real[0].repeat(2, 0).repeat(2, 1))
    assert reference_images(_result("A", samples, domain="toy"), 4) is None
