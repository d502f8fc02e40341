import pytest

from conceptlang.syntax import parse, parse_expr
from conceptlang.syntax.objects import MAX_ALTERNATIVES, expected_objects, object_counts, position_key


@pytest.mark.parametrize(
    "text,counts",
    [
        ("circle", (1,)),
        ("circle & red & large", (1,)),
        ("position(0.3, 0.7)", (1,)),
        ("position(0.2, 0.25) & position(0.8, 0.75)", (2,)),
        ("position(0.2, 0.25) & position(0.5, 0.5) & position(0.8, 0.75)", (3,)),
        ("position(0.2, 0.25) & position(0.2, 0.25)", (1,)),  # one place, one object
        ("position(0.2, 0.25) & position(0.8, 0.75) & ~red", (2,)),
        ("position(0.2, 0.25) & ~position(0.8, 0.75)", (1,)),  # a negated place adds no object
        ("position(0.2, 0.25) & -1 * position(0.8, 0.75)", (1,)),  # nor does a negative weight
        ("position(0.2, 0.25) & 2 * position(0.8, 0.75)", (2,)),
        ("position(0.2, 0.25) | position(0.8, 0.75)", (1,)),  # alternatives: one object either way
        ("position(0.2, 0.2) | (position(0.2, 0.2) & position(0.8, 0.8))", (1, 2)),
        ("(position(0.1, 0.1) | position(0.2, 0.2)) & (position(0.3, 0.3) | position(0.1, 0.1))", (1, 2)),
        ("(position(0.1, 0.1) & (position(0.2, 0.2) & position(0.3, 0.3))) & position(0.4, 0.4)", (4,)),
        ("position.position(0.2, 0.25) & position(0.8, 0.75)", (2,)),
        ("male & smiling", (1,)),
    ],
)
def test_object_counts(text, counts):
    e = parse_expr(text)
    assert object_counts(e) == counts
    assert expected_objects(e) == (counts[0] if len(counts) == 1 else counts)


def test_definitions_are_expanded():
    prog = parse("left = position(0.2, 0.25); right = position(0.8, 0.75); left & right & circle")
    assert object_counts(prog) == (2,)


def test_the_key_decides_what_places_objects():
    e = parse_expr("position(0.2, 0.25) & position(0.8, 0.75) & red")
    assert object_counts(e, key=lambda c: None) == (1,)
    # two values of one group are two objects; values of different groups describe one object
    assert object_counts(e, key=lambda c: ("g", c.name if c.args is None else c.args)) == (3,)
    assert object_counts(e, key=lambda c: (c.name, c.args)) == (2,)
    assert position_key(parse_expr("position(0.2, 0.25)")) == ("position", (0.2, 0.25))
    assert position_key(parse_expr("color.red")) is None


def test_wide_and_deep_expressions_stay_fast_and_exact():
    many_or = " | ".join(f"position({i / 10000:.4f}, 0.5)" for i in range(3000))
    assert object_counts(parse_expr(many_or)) == (1,)
    many_and = " & ".join(f"position({i / 10000:.4f}, 0.5)" for i in range(3000))
    assert object_counts(parse_expr(many_and)) == (3000,)
    # more alternatives than are tracked: counts of equal size merge, so the distinct counts stay exact
    wide = " | ".join(f"(position({i / 1000:.3f}, 0.1) & position({i / 1000:.3f}, 0.9))"
                      for i in range(MAX_ALTERNATIVES + 10)) + " | position(0.5, 0.5)"
    assert object_counts(parse_expr(wide)) == (1, 2)
