import math

import pytest

from conceptlang.evaluation.stats import Proportion, wilson_interval


@pytest.mark.parametrize(
    "k,n,lo,hi",
    [
        # Published values (e.g. Newcombe 1998, Table I; Brown, Cai & DasGupta 2001).
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
    ],
)
def test_wilson_matches_published_values(k, n, lo, hi):
    got_lo, got_hi = wilson_interval(k, n)
    assert got_lo == pytest.approx(lo, abs=5e-5)
    assert got_hi == pytest.approx(hi, abs=5e-5)


def test_wilson_is_the_score_test_inversion():
    # The interval's ends are exactly where the score statistic |p̂ − p| / sqrt(p(1−p)/n) equals z.
    z = 1.959963984540054
    for k, n in [(3, 17), (40, 50), (1, 256), (255, 256)]:
        p_hat = k / n
        for p in wilson_interval(k, n):
            assert abs(p_hat - p) / math.sqrt(p * (1 - p) / n) == pytest.approx(z, rel=1e-9)


def test_wilson_symmetry_and_containment():
    for n in (1, 7, 64, 256):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0
            lo2, hi2 = wilson_interval(n - k, n)
            assert lo == pytest.approx(1 - hi2, abs=1e-12) and hi == pytest.approx(1 - lo2, abs=1e-12)


def test_wilson_no_trials_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("k,n", [(-1, 5), (6, 5), (0, -1)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(k, n)


def test_proportion_pooling_and_format():
    p = Proportion(8, 10) + Proportion(2, 10)
    assert (p.successes, p.trials) == (10, 20)
    assert p.value == 0.5
    assert p.format() == "0.50 [0.30, 0.70]"
    assert Proportion(0, 0).format() == "n/a"
    j = Proportion(5, 10).to_json()
    assert j["successes"] == 5 and j["trials"] == 10 and j["value"] == 0.5
    assert j["ci95"] == pytest.approx([0.2366, 0.7634], abs=5e-5)
