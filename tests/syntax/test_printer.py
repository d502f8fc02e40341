"""Printer: minimal parentheses, exact numbers, invalid trees."""

import math

import pytest

from conceptlang.syntax import (
    And,
    Concept,
    Definition,
    InvalidTreeError,
    Not,
    Or,
    Program,
    Weighted,
    format_number,
    parse,
    parse_expr,
    unparse,
)

a, b, c = Concept("a"), Concept("b"), Concept("c")


@pytest.mark.parametrize(
    "tree, text",
    [
        (Or((And((Concept("male"), Concept("smiling"))), Not(Concept("black_hair")))), "male & smiling | ~black_hair"),
        (And((Or((a, b)), c)), "(a | b) & c"),
        (And((And((a, b)), c)), "(a & b) & c"),
        (Or((a, Or((b, c)))), "a | (b | c)"),
        (Not(And((a, b))), "~(a & b)"),
        (Not(Not(a)), "~~a"),
        (Not(Weighted(2.0, a)), "~2 * a"),
        (Weighted(2.0, Not(a)), "2 * ~a"),
        (Weighted(2.5, Or((a, b))), "2.5 * (a | b)"),
        (Weighted(-1.5, Weighted(3.0, a)), "-1.5 * 3 * a"),
        (And((Weighted(2.0, a), Not(b))), "2 * a & ~b"),
        (Concept("red", "color"), "color.red"),
        (Concept("position", None, (0.3, 0.7)), "position(0.3, 0.7)"),
        (Concept("f", "g", ()), "g.f()"),
        (And((a,)), "a"),  # a one-term chain prints as its term
        (Program((Definition("happy", And((a, Not(b)))),), Or((Concept("happy"), c))), "happy = a & ~b; happy | c"),
        (Definition("x", a), "x = a;"),
    ],
)
def test_unparse_exact_text(tree, text):
    assert unparse(tree) == text


@pytest.mark.parametrize(
    "value, text",
    [(2.0, "2"), (-0.0, "0"), (0.1, "0.1"), (-1.5, "-1.5"), (1e16, "1e+16"), (1e-7, "1e-07"), (5e-324, "5e-324"),
     (1.7976931348623157e308, "1.7976931348623157e+308"), (123456789012345.0, "123456789012345"), (3, "3")],
)
def test_numbers_print_exactly(value, text):
    assert format_number(value) == text
    assert float(text) == value


@pytest.mark.parametrize(
    "tree",
    [
        And(()),
        Or(()),
        Concept("not a name"),
        Concept("1abc"),
        Concept("x", "bad family"),
        Weighted(math.inf, a),
        Weighted(math.nan, a),
        Concept("p", None, (math.nan,)),
        Definition("bad name", a),
    ],
)
def test_trees_without_text_form_raise(tree):
    with pytest.raises(InvalidTreeError):
        unparse(tree)


def test_unparse_of_parse_is_stable_on_examples():
    for text in [
        "a & b & c | d & ~~e",
        "2.5 * smiling | 0.5 * (blond_hair & ~eyeglasses)",
        "happy = smiling & ~eyeglasses; happy & male",
        "~(~a | b) & -2 * (c & d)",
    ]:
        once = unparse(parse(text))
        assert unparse(parse(once)) == once
        assert parse(once) == parse(text)


def test_unparse_deep_trees():
    depth = 10_000
    tree = parse_expr("(" * depth + "a" + " & b)" * depth)
    text = unparse(tree)
    assert text == "(" * (depth - 1) + "a" + " & b)" * (depth - 1) + " & b"
    assert parse_expr(text) == tree
    assert unparse(parse_expr("~" * depth + "a")) == "~" * depth + "a"


def test_explain_text_and_unparse_share_one_precedence_table():
    from conceptlang.compiler.lower import show
    from conceptlang.syntax import parse_expr

    for text in ("2 * ~a", "~2 * a", "~~a", "~(a & b) | 2 * (a | b)", "0.5 * position(0.25, 0.75) & b"):
        e = parse_expr(text)
        assert show(e) == unparse(e) == text


def test_unparse_with_a_limit_stops_on_exponentially_long_text():
    from conceptlang.syntax.ast import And, Concept

    node = Concept("abc")
    for _ in range(80):  # a DAG of 81 distinct nodes whose text has 2**80 concepts
        node = And((node, node))
    text = unparse(node, limit=40)
    assert text == "(" * 40 + "…"  # nested chains keep their parentheses; 79 open before the first name
    assert unparse(Concept("abc"), limit=3) == "abc"
    assert unparse(And((Concept("abc"), Concept("d"))), limit=5) == "abc &…"
