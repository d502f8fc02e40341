"""training/random_expressions.py: random check lists drawn from the grammar, reproducible, each
expression satisfied by the stated share of the generator's data."""

from __future__ import annotations

import pytest

from conceptlang.evaluation.distribution import _draw_arrays
from conceptlang.evaluation.suites import parse_suite
from conceptlang.syntax import parse_expr
from conceptlang.syntax.ast import Weighted
from conceptlang.syntax.walk import postorder
from tests.scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("training/random_expressions.py")


@pytest.mark.parametrize("domain", ["scenes", "faces"])
def test_the_list_parses_and_each_expression_has_its_data_share(script, tmp_path, domain):
    out = tmp_path / "list.txt"
    script.main([domain, "-n", "6", "--seed", "4", "-o", str(out)])
    text = out.read_text()
    suite = parse_suite(text, str(out))
    entries = list(suite.entries if hasattr(suite, "entries") else suite)
    assert len(entries) == 6 and len({e.text for e in entries}) == 6
    labels = _draw_arrays(domain, 4000, 12345).to_dicts()
    shares = [float(line.split("= ")[1]) for line in text.splitlines() if line.startswith("# p = ")]
    for entry, share in zip(entries, shares):
        p = script.data_probability(entry.expr, labels)
        assert round(p, 3) == share and 0.02 <= p <= 0.8
        assert not any(isinstance(n, Weighted) for n in postorder(entry.expr))  # no --weights
    # the same seed draws the same list; another seed another
    again = tmp_path / "again.txt"
    script.main([domain, "-n", "6", "--seed", "4", "-o", str(again)])
    assert again.read_text() == text
    other = tmp_path / "other.txt"
    script.main([domain, "-n", "6", "--seed", "5", "-o", str(other)])
    assert other.read_text() != text


def test_data_probability_counts_the_labels_that_satisfy_the_expression(script):
    labels = [{"red": True, "circle": False}, {"red": True, "circle": True}, {"red": False, "circle": True},
              {"red": False, "circle": False}]
    assert script.data_probability(parse_expr("red & ~circle"), labels) == 0.25
    assert script.data_probability(parse_expr("red | circle"), labels) == 0.75
    assert script.data_probability(parse_expr("~(red & circle)"), labels) == 0.75
