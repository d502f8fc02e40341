"""AST nodes: structural equality and hashing (spans ignored), iterative repr, immutability."""

import dataclasses

import pytest

from conceptlang.syntax import NO_SPAN, And, Concept, Definition, Not, Or, Program, Span, Weighted, parse_expr


def test_equality_is_structural_and_ignores_spans():
    x = And((Concept("a", span=Span(1, 1, 0, 1)), Not(Concept("b"))))
    y = And((Concept("a"), Not(Concept("b"), span=Span(3, 4, 10, 12))))
    assert x == y and hash(x) == hash(y)
    assert x != And((Concept("a"), Not(Concept("c"))))
    assert x != Or(x.terms)
    assert And((Concept("a"), Concept("b"))) != And((Concept("a"), Concept("b"), Concept("c")))
    assert Concept("red", "color") != Concept("red")
    assert Concept("p", None, ()) != Concept("p")
    assert Weighted(2.0, Concept("a")) != Weighted(2.5, Concept("a"))
    assert Weighted(2, Concept("a")) == Weighted(2.0, Concept("a"))


def test_nodes_work_as_dict_keys_and_in_sets():
    seen = {parse_expr("a & ~b"): 1}
    assert seen[And((Concept("a"), Not(Concept("b"))))] == 1
    assert len({parse_expr("a | b"), parse_expr("a|b"), parse_expr("b | a")}) == 2


def test_comparison_with_other_types():
    assert Concept("a") != "a"
    assert (Concept("a") == 1) is False


def test_nodes_are_frozen_and_lists_become_tuples():
    node = And([Concept("a"), Concept("b")])
    assert isinstance(node.terms, tuple)
    assert Concept("p", None, [0.1, 0.2]).args == (0.1, 0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.terms = ()


def test_repr_reads_like_the_constructor_calls():
    expr = parse_expr("color.red & ~2 * position(0.5, 0.5) | x")
    assert repr(expr) == (
        "Or(terms=(And(terms=(Concept(name='red', family='color'), Not(expr=Weighted(weight=2.0, "
        "expr=Concept(name='position', args=(0.5, 0.5)))))), Concept(name='x')))"
    )
    assert repr(And((Concept("a"),))) == "And(terms=(Concept(name='a'),))"
    program = Program((Definition("h", Concept("a")),), Concept("h"))
    assert repr(program) == "Program(definitions=(Definition(name='h', expr=Concept(name='a')),), body=Concept(name='h'))"


def test_deep_equality_hash_repr():
    depth = 5_000  # repr is cut at 100,000 characters
    x = parse_expr("~" * depth + "a")
    y = parse_expr("~" * depth + "a")
    z = parse_expr("~" * depth + "b")
    assert x == y and hash(x) == hash(y)
    assert x != z
    assert repr(x).endswith("Concept(name='a')" + ")" * depth)


def test_span_helpers():
    expr = parse_expr("a &\n  b")
    b = expr.terms[1]
    assert b.span.describe() == "line 2, column 3"
    assert b.span.location().line == 2 and b.span.location().source == "a &\n  b"
    assert NO_SPAN.location() is None and NO_SPAN.describe() == ""
