"""Boolean semantics over ground-truth labels."""

import pytest

from conceptlang.errors import NameResolutionError
from conceptlang.syntax import Concept, Not, Weighted, evaluate, parse, parse_expr
from conceptlang.testing import truth_assignments

FACE = {"male": True, "smiling": False, "black_hair": True, "objects": []}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("male", True),
        ("smiling", False),
        ("~smiling", True),
        ("male & smiling", False),
        ("male | smiling", True),
        ("(male & smiling) | ~black_hair", False),
        ("male & ~smiling & black_hair", True),
        ("~(male & smiling)", True),
        ("~male | smiling", False),
        ("2.5 * male", True),
        ("-1 * male", False),
        ("-1 * smiling", True),
        ("0 * smiling", False),  # zero counts as a positive sign: 0 * e means e
        ("~-2 * smiling", False),
        ("happy = smiling & ~black_hair; happy | male", True),
        ("happy = smiling & ~black_hair; happy & male", False),
    ],
)
def test_evaluate_faces(text, expected):
    assert evaluate(parse(text), FACE) is expected


def test_design_card_truth_table():
    expr = parse_expr("(male & smiling) | ~black_hair")
    rows = {(r["male"], r["smiling"], r["black_hair"]): evaluate(expr, r) for r in truth_assignments(expr)}
    assert rows == {(m, s, h): (m and s) or not h for m in (False, True) for s in (False, True) for h in (False, True)}


SCENE = {
    "shape.circle": True, "circle": True, "color.red": True, "red": True,
    "shape.square": False, "square": False, "color.blue": False, "blue": False,
    "objects": [{"x": 0.3, "y": 0.7, "shape": "circle", "color": "red"}],
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("color.red & shape.circle", True),
        ("red & ~blue", True),
        ("position(0.3, 0.7)", True),
        ("position(0.38, 0.76)", True),  # distance 0.1 exactly is within
        ("position(0.4, 0.7)", True),
        ("position(0.41, 0.7)", False),
        ("position(0.7, 0.3)", False),
        ("position(0.3, 0.7) & ~color.blue", True),
        ("position.position(0.3, 0.7)", True),
    ],
)
def test_evaluate_scenes(text, expected):
    assert evaluate(parse_expr(text), SCENE) is expected


def test_position_tolerance_is_a_parameter():
    assert evaluate(parse_expr("position(0.5, 0.7)"), SCENE, position_tolerance=0.25) is True
    assert evaluate(parse_expr("position(0.5, 0.7)"), SCENE) is False


def test_any_object_can_satisfy_a_position():
    labels = {"objects": [{"x": 0.1, "y": 0.1}, {"x": 0.9, "y": 0.9}]}
    assert evaluate(parse_expr("position(0.1, 0.1) & position(0.9, 0.9)"), labels) is True
    assert evaluate(parse_expr("position(0.5, 0.5)"), labels) is False


def test_missing_concept_is_an_error_naming_it_with_a_suggestion():
    with pytest.raises(NameResolutionError) as info:
        evaluate(parse_expr("male & smilling"), FACE)
    message = str(info.value)
    assert "'smilling'" in message and "did you mean 'smiling'" in message
    assert info.value.location.column == 8


def test_missing_concept_is_an_error_even_when_the_result_does_not_depend_on_it():
    with pytest.raises(NameResolutionError, match="'eyeglasses'"):
        evaluate(parse_expr("male | eyeglasses"), FACE)


def test_synthetic_nodes_name_the_concept_without_position():
    with pytest.raises(NameResolutionError) as info:
        evaluate(Concept("green", "color"), SCENE)
    assert str(info.value) == "no label for the concept 'color.green'; did you mean 'color.red', 'color.blue'?"
    assert info.value.location is None


@pytest.mark.parametrize(
    "expr, labels, words",
    [
        (parse_expr("position(0.3)"), SCENE, "two arguments"),
        (parse_expr("position(0.3, 0.7)"), {"red": True}, "'objects'"),
        (parse_expr("position(0.3, 0.7)"), {"objects": [{"x": 0.3}]}, "'x' and 'y'"),
        (parse_expr("size(2)"), SCENE, "only parameterised concept"),
        (parse_expr("red"), {"red": "yes"}, "true or false"),
        (parse_expr("objects"), SCENE, "no label"),
    ],
)
def test_malformed_labels_and_unknown_parameterised_concepts(expr, labels, words):
    with pytest.raises(NameResolutionError, match=words):
        evaluate(expr, labels)


def test_numpy_bools_and_0_1_are_accepted():
    np = pytest.importorskip("numpy")
    assert evaluate(parse_expr("a & ~b"), {"a": np.bool_(True), "b": 0}) is True


def test_weight_sign_rule_under_negation():
    a = Concept("a")
    for w, value in [(3.0, True), (0.0, True), (-0.0, True), (-2.0, False)]:
        assert evaluate(Weighted(w, a), {"a": True}) is value
        assert evaluate(Not(Weighted(w, a)), {"a": True}) is (not value)


def test_evaluate_deep_and_long_expressions():
    deep = parse_expr("~" * 10_001 + "a")
    assert evaluate(deep, {"a": True}) is False
    wide = parse_expr(" | ".join(f"c{i}" for i in range(20_000)))
    labels = {f"c{i}": i == 19_999 for i in range(20_000)}
    assert evaluate(wide, labels) is True


def test_evaluate_shared_definitions_stays_linear():
    # d30 unfolds to 2**30 leaves; expansion shares subtrees, so evaluation is instant.
    lines = ["d0 = a & b;"] + [f"d{i} = d{i-1} | d{i-1};" for i in range(1, 31)]
    program = parse("\n".join(lines) + " d30")
    assert evaluate(program, {"a": True, "b": True}) is True
    assert evaluate(program, {"a": True, "b": False}) is False
