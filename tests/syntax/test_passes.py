"""Rewrite passes on exact examples, definition errors, and very deep or wide trees."""

import pickle

import pytest

from conceptlang.errors import NameResolutionError
from conceptlang.syntax import (
    And,
    Concept,
    Not,
    Or,
    Weighted,
    concepts_of,
    definition_errors,
    depth,
    eliminate_common_subexpressions,
    expand_definitions,
    flatten,
    fold_weights,
    normalise,
    parse,
    parse_expr,
    postorder,
    to_nnf,
    tree_size,
    unparse,
)

E = parse_expr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("(a & (b & c)) & (d | (e | f))", "a & b & c & (d | e | f)"),
        ("((a | b) | c) | ~(d & (e & f))", "a | b | c | ~(d & e & f)"),
        ("2 * ((a & b) & c)", "2 * (a & b & c)"),
        ("a | b & c", "a | b & c"),
    ],
)
def test_flatten(text, expected):
    assert flatten(E(text)) == E(expected)


def test_flatten_unwraps_one_term_chains():
    a = Concept("a")
    assert flatten(And((Or((a,)),))) == a
    assert flatten(And((a, And((Concept("b"),))))) == And((a, Concept("b")))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("~(a & b)", "~a | ~b"),
        ("~(a | ~b)", "~a & b"),
        ("~~a", "a"),
        ("~(a & ~(b | ~c))", "~a | (b | ~c)"),  # NNF does not flatten
        ("~(2 * a)", "2 * ~a"),
        ("~(-2 * (a & b))", "-2 * (~a | ~b)"),
        ("~position(0.1, 0.2) & color.red", "~position(0.1, 0.2) & color.red"),
    ],
)
def test_to_nnf(text, expected):
    assert to_nnf(E(text)) == E(expected)


@pytest.mark.parametrize(
    "text, expected",
    [("~(2 * a)", "~a"), ("-2 * (a & b)", "~a | ~b"), ("~(-1 * a | 3 * b)", "a & ~b"), ("0 * ~~a", "a")],
)
def test_to_nnf_without_weights(text, expected):
    assert to_nnf(E(text), keep_weights=False) == E(expected)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2 * 3 * a", "6 * a"),
        ("1 * a & b", "a & b"),
        ("0.5 * 2 * a", "a"),
        ("-1 * -1 * a", "a"),
        ("-2 * 3 * ~a", "-6 * ~a"),
        ("0 * 2 * a", "0 * 2 * a"),  # a zero product would lose the inner sign: not folded
        ("1e200 * 1e200 * a", "1e200 * 1e200 * a"),  # overflow: not folded
        ("2 * (3 * a & 4 * 5 * b)", "2 * (3 * a & 20 * b)"),
    ],
)
def test_fold_weights(text, expected):
    assert fold_weights(E(text)) == E(expected)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a & b & a", "2 * a & b"),
        ("2 * a & 3 * a & b", "5 * a & b"),
        ("a & -1 * a & -2 * a", "a & -3 * a"),
        ("a | b | a", "a | b"),
        ("a | a", "a"),
        ("(a | b) & (a | b) & c", "2 * (a | b) & c"),
        ("a & a & 2 * a", "4 * a"),
    ],
)
def test_cse_merges_repeats(text, expected):
    assert eliminate_common_subexpressions(E(text)) == E(expected)


def test_cse_without_merging_keeps_and_repeats_but_shares_them():
    out = eliminate_common_subexpressions(E("(x | y) & (x | y) & (y | x)"), merge_like_terms=False)
    assert out == E("(x | y) & (x | y) & (y | x)")
    assert out.terms[0] is out.terms[1]
    assert out.terms[2] is not out.terms[0]


def test_cse_shares_equal_subtrees():
    out = eliminate_common_subexpressions(E("(a & ~b) | (c & (a & ~b)) | ~b"))
    first = out.terms[0]
    second = out.terms[1].terms[1]
    assert first is second
    assert out.terms[2] is first.terms[1]


def test_normalise_pipeline():
    assert normalise(E("((a & a) & 2 * 3 * a) | b | b")) == E("8 * a | b")


def test_passes_accept_programs():
    program = parse("x = ~~(a & (b & c)); x | x")
    assert unparse(flatten(program)) == "x = ~~(a & b & c); x | x"
    assert unparse(to_nnf(program)) == "x = a & (b & c); x | x"
    assert unparse(eliminate_common_subexpressions(program)) == "x = ~~(a & (b & c)); x"


# --------------------------------------------------------------------------------------------
# definitions


def test_expand_definitions_inlines_in_any_order():
    program = parse("happy = smiling & ~frowning; both = happy & male; both | happy")
    assert expand_definitions(program) == E("((smiling & ~frowning) & male) | (smiling & ~frowning)")
    reordered = parse("both = happy & male; happy = smiling & ~frowning; both | happy")
    assert expand_definitions(reordered) == expand_definitions(program)


def test_qualified_names_are_not_definition_references():
    assert expand_definitions(parse("red = a; color.red & red")) == E("color.red & a")


def test_expression_passes_through_expand():
    expr = E("a & b")
    assert expand_definitions(expr) is expr


@pytest.mark.parametrize(
    "text, words, line, column",
    [
        ("a = a & b; a", "refer to themselves: a -> a", 1, 1),
        ("x = y; y = z; z = x | q; x", "refer to themselves: x -> y -> z -> x", 1, 1),
        ("a = b;\na = c; a", "'a' is defined twice (first defined at line 1, column 1)", 2, 1),
        ("h = s; h(1, 2)", "'h' is a definition and takes no arguments", 1, 8),
    ],
)
def test_definition_errors(text, words, line, column):
    with pytest.raises(NameResolutionError) as info:
        expand_definitions(parse(text))
    err = info.value
    assert words in err.message
    assert (err.location.line, err.location.column) == (line, column)
    assert err.exit_code == 2


def test_shadowing_a_known_concept_is_an_error():
    program = parse("smiling = male & young; smiling")
    assert expand_definitions(program) == E("male & young")  # no registry given: nothing to shadow
    with pytest.raises(NameResolutionError, match="would shadow the concept 'smiling'"):
        expand_definitions(program, concepts={"smiling", "male", "young"})


def test_definition_errors_lists_every_problem():
    program = parse("a = b; a = c; c = c; d = a(1); d")
    messages = [e.message for e in definition_errors(program, concepts={"d"})]
    assert messages == [
        "'a' is defined twice (first defined at line 1, column 1)",
        "the definition 'd' would shadow the concept 'd'; choose another name",
        "'a' is a definition and takes no arguments",
        "definitions refer to themselves: c -> c",
    ]


def test_concepts_of():
    program = parse("happy = smiling & ~eyeglasses; happy & male | color.red & position(0.1, 0.2) | smiling")
    assert concepts_of(program) == {
        Concept("smiling"), Concept("eyeglasses"), Concept("male"), Concept("red", "color"),
        Concept("position", None, (0.1, 0.2)),
    }


def test_chained_definitions_are_shared_not_copied():
    lines = ["d0 = a & b;"] + [f"d{i} = d{i-1} | ~d{i-1};" for i in range(1, 41)]
    expr = expand_definitions(parse("\n".join(lines) + " d40"))
    assert tree_size(expr) > 2**40
    assert len(list(postorder(expr))) == 3 + 2 * 40  # a, b, d0, then an Or and a Not per level
    assert len(repr(expr)) < 200_000  # repr is truncated, not 2**40 long
    assert depth(expr) == 2 * 40 + 2


# --------------------------------------------------------------------------------------------
# size limits: no recursion anywhere


DEEP = 10_000


@pytest.mark.parametrize(
    "text",
    # 3,000 levels is already three times Python's recursion limit.
    ["~" * DEEP + "(a & b)", "(" * 3000 + "a" + " & ~b)" * 3000],
    ids=["nots", "left-nested-and"],
)
def test_passes_on_deep_trees(text):
    expr = E(text)
    flat = flatten(expr)
    assert depth(flat) <= depth(expr)
    nnf = to_nnf(expr)
    assert all(isinstance(n.expr, Concept) for n in postorder(nnf) if isinstance(n, Not))
    shared = eliminate_common_subexpressions(fold_weights(expr))
    assert len(unparse(shared)) <= len(unparse(expr))  # printable without recursion


def test_fold_weights_stops_at_overflow_in_deep_chains():
    expr = E("2 * -1 * " * (DEEP // 2) + "a")  # the full product, 2**5000, is not finite
    folded = fold_weights(expr)
    assert depth(folded) < 10 < depth(expr)
    for n in postorder(folded):
        if isinstance(n, Weighted) and isinstance(n.expr, Weighted):
            assert abs(n.weight * n.expr.weight) == float("inf")


def test_flatten_is_linear_for_long_left_nested_chains():
    expr = E("(" * DEEP + "a" + " & b)" * DEEP)
    flat = flatten(expr)
    assert isinstance(flat, And) and len(flat.terms) == DEEP + 1


def test_deep_trees_pickle_without_stale_hashes():
    expr = E("a & ~b | c")
    hash(expr)
    clone = pickle.loads(pickle.dumps(expr))
    assert "_hash" not in clone.__dict__
    assert clone == expr and hash(clone) == hash(expr)
