"""negation="complement": ~v of an exclusive family is the mixture of its other values; a yes/no
attribute's negation is its known-absent value. The ratio form stays the default and the option."""

from __future__ import annotations

import pytest
import torch

from conceptlang.compiler import compile as compile_expr
from conceptlang.errors import CompileError
from conceptlang.interface import ConceptRef
from conceptlang.models.analytic import GaussianRegistry
from tests.compiler.fakes import TableSharesRegistry


def _rows(g):
    """{disjunct text's sorted leaf labels: (share, coefficients by leaf label)} of a DNF graph."""
    out = {}
    for d in g.disjuncts:
        coefs = {leaf.label: c for leaf, c in zip(g.leaves, d.coefs) if c != 0.0}
        out[tuple(sorted(coefs))] = (d.share, coefs)
    return out


@pytest.mark.parametrize("and_mode", ["sum", "product", "joint"])
def test_complement_equals_the_or_of_the_other_values(and_mode):
    reg = GaussianRegistry("noise_conditional")
    got = compile_expr("circle & ~red", reg, negation="complement", and_mode=and_mode)
    want = compile_expr("(circle & green) | (circle & blue)", reg, and_mode=and_mode)
    assert got.route == want.route == "dnf"
    assert _rows(got) == pytest.approx(_rows(want))
    assert [d.share for d in got.disjuncts] == pytest.approx([0.5, 0.5])
    (gr,) = got.groundings
    assert gr.how == "complement" and "green 0.500, blue 0.500" in gr.describe() and "equal shares" in gr.describe()


def test_bare_negation_is_the_mixture_of_the_rest_and_a_two_value_family_its_other_value():
    reg = GaussianRegistry("noise_conditional")
    g = compile_expr("~red", reg, negation="complement")
    assert sorted(leaf.label for leaf in g.leaves) == ["color.blue", "color.green"]
    assert g.route == "dnf" and [d.share for d in g.disjuncts] == pytest.approx([0.5, 0.5])
    g = compile_expr("~large & circle", reg, negation="complement", and_mode="joint")
    assert g.route == "linear" and [leaf.label for leaf in g.leaves] == ["shape.circle & size.small"]
    x = torch.randn(5, 2, 1, 1)
    want = compile_expr("small & circle", reg, and_mode="joint")
    torch.testing.assert_close(g.energy(x, torch.full((5,), 0.1)), want.energy(x, torch.full((5,), 0.1)))


def test_ratio_is_the_default_and_unchanged():
    reg = GaussianRegistry("noise_conditional")
    g = compile_expr("circle & ~red", reg)
    assert g.options["negation"] == "ratio" and g.route == "linear"
    (gr,) = g.groundings
    assert gr.how == "ratio" and gr.alpha == 0.5 and "ratio form" in gr.describe()
    r = compile_expr("circle & ~red", reg, negation="ratio", and_mode="sum")
    assert r.linear_coefs == pytest.approx(tuple(
        {"shape.circle": 1.0, "color.red": -0.5}[leaf.label] for leaf in r.leaves))


def test_a_positive_value_of_the_family_implies_the_negation():
    reg = GaussianRegistry("noise_conditional")
    g = compile_expr("red & ~blue & circle", reg, negation="complement", and_mode="joint")
    want = compile_expr("red & circle", reg, and_mode="joint")
    assert [leaf.label for leaf in g.leaves] == [leaf.label for leaf in want.leaves]
    assert g.groundings[0].how == "implied" and "implied by red" in g.groundings[0].describe()
    # contradictory (~red & red): the ratio form stays, and the expression is unsatisfiable
    with pytest.warns(UserWarning, match="unsatisfiable"):
        g = compile_expr("red & ~red", reg, negation="complement")
    assert g.groundings[0].how == "ratio"


def test_two_negated_families_branch_over_every_combination():
    reg = GaussianRegistry("noise_conditional")
    g = compile_expr("~red & ~circle & ~small", reg, negation="complement", and_mode="joint")
    assert sorted(leaf.label for leaf in g.leaves) == [
        "color.blue & shape.square & size.large", "color.green & shape.square & size.large"]
    g = compile_expr("~red & ~blue", reg, negation="complement")
    assert [leaf.label for leaf in g.leaves] == ["color.green"] and g.route == "linear"


def test_weighted_compounds_and_negated_positions_keep_the_ratio_form_inside():
    reg = GaussianRegistry("noise_conditional")
    for text in ("2 * (circle & ~red)", "~(circle & position(0.2, 0.2))"):
        got = compile_expr(text, reg, negation="complement", and_mode="product")
        want = compile_expr(text, reg, negation="ratio", and_mode="product")
        assert got.route == want.route == "linear"
        assert got.linear_coefs == want.linear_coefs
        assert [leaf.label for leaf in got.leaves] == [leaf.label for leaf in want.leaves]


@pytest.mark.parametrize("weighted, plain", [
    ("0.5 * ~red & circle", "~red & circle"),
    ("circle & -1 * red", "circle & ~red"),
    ("circle & 2 * (3 * ~red)", "circle & ~red"),
    ("2 * ~(red | blue)", "~(red | blue)"),
    ("(2 * ~red & circle) | square", "(~red & circle) | square"),
])
def test_a_weighted_negation_is_lowered_as_the_negation_with_a_notice(weighted, plain):
    """The sign carries the meaning: ``w * ~e`` (w > 0) and ``-w * e`` are ``~e``, lowered to the values
    where it holds, which the magnitude cannot scale; the notice says so. negation="ratio" keeps the
    weight in the repulsion's coefficient (−α·w)."""
    reg = GaussianRegistry("noise_conditional")
    got = compile_expr(weighted, reg, negation="complement", and_mode="product")
    want = compile_expr(plain, reg, negation="complement", and_mode="product")
    assert got.route == want.route and [leaf.label for leaf in got.leaves] == [leaf.label for leaf in want.leaves]
    if got.route == "dnf":
        assert [(d.coefs, d.share) for d in got.disjuncts] == [(d.coefs, d.share) for d in want.disjuncts]
    else:
        assert got.linear_coefs == want.linear_coefs
    assert any("a weighted negation is lowered as the negation" in n for n in got.notices)
    assert not any("weighted negation" in n for n in want.notices)


@pytest.mark.parametrize("text, named", [
    ("red & ~(small | 2 * circle)", ["~2 * circle"]),  # pushed: ~small & ~(2 * circle)
    ("~(small | 2 * circle)", ["~2 * circle"]),
    ("red & ~(small | 2 * ~circle)", ["~2 * ~circle"]),  # ~(2 * ~circle) is circle, at no weight
    ("2 * ~(small | 3 * circle) & red", ["2 * ~(small | 3 * circle)", "~3 * circle"]),
    ("(-2 * ~red) & circle", []),  # 2 * red & circle: the magnitude stays
    ("2 * red & circle", []),
])
def test_the_notice_names_every_weight_a_negation_drops(text, named):
    reg = GaussianRegistry("noise_conditional")
    g = compile_expr(text, reg, negation="complement", and_mode="product")
    notes = [n for n in g.notices if "a weighted negation is lowered as the negation" in n]
    assert (notes[0].split(": a weighted negation")[0].split(", ") if notes else []) == named


@pytest.mark.parametrize("text, named", [
    # -1 * ~g is g, a weighted conjunction spliced in a second pass; the weight under its negation
    # is dropped there and named, and the first pass's names are not repeated
    ("-1 * ~(2 * (red & ~(3 * circle)))", [["~3 * circle"]]),
    ("-1 * ~(2 * (red & ~(3 * circle))) & ~(small & 2 * ~blue)", [["~2 * ~blue"], ["~3 * circle"]]),
    ("-1 * ~(2 * (red & ~circle))", []),
])
def test_a_weight_dropped_in_a_spliced_group_is_named(text, named):
    reg = GaussianRegistry("noise_conditional")
    g = compile_expr(text, reg, negation="complement", and_mode="joint")
    notes = [n for n in g.notices if "a weighted negation is lowered as the negation" in n]
    assert [n.split(": a weighted negation")[0].split(", ") for n in notes] == named


def test_dropped_weights_looks_into_an_or_only_when_asked():
    """A conjunction's pass looks where the negations are pushed; an OR's branches are lowered (and
    noted) on their own, possibly in the ratio form, where a weight keeps its coefficient."""
    from conceptlang.compiler.or_weights import dropped_weights
    from conceptlang.syntax import parse, unparse

    e = parse("2 * (red | 3 * ~blue) & ~(4 * green)").body
    terms = list(e.terms)
    assert [unparse(t) for t in dropped_weights(terms)] == ["~4 * green"]
    assert [unparse(t) for t in dropped_weights(terms, deep=True)] == ["3 * ~blue", "~4 * green"]


@pytest.mark.parametrize("written, same", [
    # a concept repeated in a conjunction is `2 * A`, and keeps its negated compound's complement
    ("red & red & ~(red & small)", "2 * red & ~(red & small)"),
    # a term that nested ORs repeat is one branch: `~(~red | (~red | large))` is red & ~large
    ("~(~red | (~red | large)) & ~(circle & ~small)", "red & ~large & ~(circle & ~small)"),
])
def test_repeats_lower_as_their_weight_and_nested_or_repeats_once(written, same):
    reg = TableSharesRegistry()
    got = compile_expr(written, reg, negation="complement", and_mode="product")
    want = compile_expr(same, TableSharesRegistry(), negation="complement", and_mode="product")
    assert got.route == want.route
    assert [leaf.label for leaf in got.leaves] == [leaf.label for leaf in want.leaves]
    assert got.linear_coefs == want.linear_coefs
    assert [(d.coefs, d.share) for d in got.disjuncts or []] == [(d.coefs, d.share) for d in want.disjuncts or []]


@pytest.mark.parametrize("weighted, plain", [("~(2 * red & circle)", "~(red & circle)"), ("~(2 * red) & circle", "~red & circle")])
def test_a_weight_under_a_negation_keeps_the_negated_compound_its_complement(weighted, plain):
    """The complement of a negated compound is decided by its boolean meaning, which a positive
    weight inside does not change (this used to fail with an AttributeError)."""
    reg = TableSharesRegistry()
    got = compile_expr(weighted, reg, negation="complement", and_mode="product")
    want = compile_expr(plain, TableSharesRegistry(), negation="complement", and_mode="product")
    assert got.route == want.route == "dnf"
    assert [leaf.label for leaf in got.leaves] == [leaf.label for leaf in want.leaves]
    assert [(d.coefs, d.share) for d in got.disjuncts] == [(d.coefs, d.share) for d in want.disjuncts]


def test_with_the_ratio_form_a_weighted_negation_scales_the_repulsion():
    reg = GaussianRegistry("noise_conditional")
    g = compile_expr("0.5 * ~red & circle", reg, negation="ratio", and_mode="product", alpha=0.5)
    coefs = {leaf.label: c for leaf, c in zip(g.leaves, g.linear_coefs)}
    assert coefs == {"color.red": -0.25, "shape.circle": 1.0, "prior": 0.25}


def test_complement_inside_an_or_joins_its_mixture():
    reg = GaussianRegistry("noise_conditional")
    g = compile_expr("square | ~red", reg, negation="complement")
    shares = {d.text: d.share for d in g.disjuncts}
    # the OR's two branches are equally likely; ~red's own mixture splits its half
    assert shares == pytest.approx({"shape.square": 0.5, "color.green": 0.25, "color.blue": 0.25})


def test_too_many_combinations_keep_the_ratio_form_with_a_notice():
    reg = GaussianRegistry("noise_conditional")
    g = compile_expr("~red & ~circle", reg, negation="complement", max_disjuncts=1)
    assert g.route == "linear" and all(gr.how == "ratio" for gr in g.groundings)
    assert any("keep the ratio form" in n for n in g.notices)


class _SharesRegistry(GaussianRegistry):
    """The analytic registry with data shares and a known-absent value for ``size``."""

    def __init__(self, shares):
        super().__init__("noise_conditional")
        self.shares = shares
        self.asked = []

    def value_shares(self, domain, families, given):
        self.asked.append((families, tuple(r.qualified for r in given)))
        return self.shares


def test_shares_come_from_the_registry_and_unseen_combinations_are_dropped():
    reg = _SharesRegistry({("green",): 0.6, ("blue",): 0.2, ("red",): 0.2})
    g = compile_expr("circle & ~red", reg, negation="complement")
    assert {d.text: d.share for d in g.disjuncts} == pytest.approx(
        {"circle & color.green": 0.75, "circle & color.blue": 0.25})
    assert reg.asked == [(("color",), ("shape.circle",))]
    assert "the data's, given the rest of the conjunction" in g.groundings[0].describe()
    reg = _SharesRegistry({("green",): 1.0})
    g = compile_expr("circle & ~red", reg, negation="complement", and_mode="joint")
    assert g.route == "linear" and [leaf.label for leaf in g.leaves] == ["color.green & shape.circle"]


def test_negation_option_is_validated():
    with pytest.raises(CompileError, match="negation must be one of ratio, complement"):
        compile_expr("~red", GaussianRegistry(), negation="mixture")


def test_absent_ref_prints_as_the_none_token():
    r = ConceptRef("faces", "smiling", value="smiling", absent=True)
    assert r.qualified == "smiling.<none>" and r != ConceptRef("faces", "smiling", value="smiling")


class _DataRegistry(GaussianRegistry):
    """The analytic registry with the data's shares of colour x size (shape given or not)."""

    def value_shares(self, domain, families, given):
        table = {("red", "small"): 0.1, ("red", "large"): 0.3, ("green", "small"): 0.2,
                 ("green", "large"): 0.0, ("blue", "small"): 0.25, ("blue", "large"): 0.15}
        if families == ("color", "size"):
            return table
        if families == ("size",):
            v = [r.value for r in given if r.family == "color"]
            return {(z,): table[(v[0], z)] for z in ("small", "large")} if v else None
        return None


def test_free_families_data_draws_the_unnamed_families_as_the_data_has_them():
    reg = _DataRegistry("noise_conditional")
    g = compile_expr("circle", reg, free_families="data", and_mode="joint")
    assert {d.text: round(d.share, 6) for d in g.disjuncts} == {
        "color.red & shape.circle & size.small": 0.1, "color.red & shape.circle & size.large": 0.3,
        "color.green & shape.circle & size.small": 0.2, "color.blue & shape.circle & size.small": 0.25,
        "color.blue & shape.circle & size.large": 0.15}
    assert all(len(leaf.refs) == 3 for leaf in g.leaves)  # each branch is one joint leaf
    assert any("free families color, size" in n for n in g.notices)
    # with the complement: ~green leaves red and blue, renormalised
    g = compile_expr("circle & ~green", reg, free_families="data", negation="complement", and_mode="joint")
    assert sorted(round(d.share, 6) for d in g.disjuncts) == [0.125, 0.1875, 0.3125, 0.375]
    # only with a joint model and the data's shares; two positions (two objects) stay the model's
    for text, opts in (("circle", {"and_mode": "product"}), ("circle & position(0.2, 0.2) & position(0.8, 0.8)", {})):
        g = compile_expr(text, reg, free_families="data", **{"and_mode": "joint", **opts})
        assert g.disjuncts is None and not any("free families" in n for n in g.notices)
    g = compile_expr("circle", GaussianRegistry("noise_conditional"), free_families="data", and_mode="joint")
    assert g.route == "linear" and [leaf.label for leaf in g.leaves] == ["shape.circle"]


def test_too_large_an_expansion_falls_back_to_the_model_and_the_ratio_form():
    reg = _DataRegistry("implicit")  # implicit models have no log-sum-exp route to fall back on
    g = compile_expr("circle | square", reg, free_families="data", and_mode="joint", max_disjuncts=6)
    assert g.options["free_families"] == "data" and g.route == "dnf" and len(g.disjuncts) == 2
    assert any("outgrew max_disjuncts = 6; lowered with its free discrete families left to the model" in n
               for n in g.notices)
    assert [leaf.label for leaf in g.leaves] == [leaf.label for leaf in compile_expr(
        "circle | square", reg, free_families="model", and_mode="joint").leaves]
    g = compile_expr("(circle & ~red) | (square & ~blue)", reg, negation="complement", max_disjuncts=3)
    assert g.options["negation"] == "ratio" and len(g.disjuncts) == 2


def test_free_families_are_not_enumerated_inside_an_enclosing_conjunction():
    # `(green | red) & circle`: the OR's branches are terms of the conjunction, so `green` must not
    # branch over shapes (which would put square and circle in one product)
    reg = _DataRegistry("noise_conditional")
    g = compile_expr("(green | red) & circle", reg, free_families="data", and_mode="joint")
    want = compile_expr("(green | red) & circle", reg, free_families="model", and_mode="joint")
    assert [leaf.label for leaf in g.leaves] == [leaf.label for leaf in want.leaves]
    assert [d.coefs for d in g.disjuncts] == [d.coefs for d in want.disjuncts]
    assert not any("free families" in n for n in g.notices)


def test_a_bare_complement_also_draws_the_families_it_leaves_free():
    # `~red` names no positive concept; one complement value finds the joint model, so shape and
    # size are drawn as the data has them too (scenes: every triple equally likely, ±5 %)
    from conceptlang.models.registry import load_registry

    g = compile_expr("~red", load_registry())
    assert g.options["free_families"] == "data" and len(g.disjuncts) == 5 * 3 * 2
    conds = [next(leaf.condition for leaf, c in zip(g.leaves, d.coefs) if c == 1.0) for d in g.disjuncts]
    assert {(c["color"], c["shape"], c["size"]) for c in conds} == {
        (col, sh, sz) for col in ("green", "blue", "yellow", "purple", "cyan")
        for sh in ("circle", "square", "triangle") for sz in ("small", "large")}
    assert sum(d.share for d in g.disjuncts) == pytest.approx(1.0)
    assert all(d.share == pytest.approx(1 / 30, rel=0.05) for d in g.disjuncts)
    assert any("~red: free families shape, size" in n for n in g.notices)


def test_a_negated_or_of_values_is_the_mixture_of_the_remaining_values():
    reg = GaussianRegistry("noise_conditional")
    for and_mode in ("sum", "product", "joint"):
        got = compile_expr("~(red | green)", reg, negation="complement", and_mode=and_mode)
        want = compile_expr("blue", reg, and_mode=and_mode)
        assert got.route == want.route == "linear"
        assert [leaf.label for leaf in got.leaves] == ["color.blue"]
        x = torch.randn(4, 2, 1, 1)
        torch.testing.assert_close(got.energy(x, torch.full((4,), 0.3)), want.energy(x, torch.full((4,), 0.3)))
    (gr,) = got.groundings  # read as ~red & ~green: one family's complement
    assert gr.describe() == "~red, ~green: lowered to the complement, the mixture over color: blue 1.000 (equal shares)"


def test_a_negated_or_is_the_conjunction_of_the_negations_and_a_double_negation_the_concept():
    reg = GaussianRegistry("noise_conditional")
    for text, same in (("~(circle | position(0.2, 0.2))", "~circle & ~position(0.2, 0.2)"),
                       ("~~red & circle", "red & circle")):
        got = compile_expr(text, reg, negation="complement", and_mode="joint")
        want = compile_expr(same, reg, negation="complement", and_mode="joint")
        assert [leaf.label for leaf in got.leaves] == [leaf.label for leaf in want.leaves]
        assert got.route == want.route
        assert _rows(got) == pytest.approx(_rows(want)) if got.disjuncts else got.linear_coefs == want.linear_coefs
    # an OR under two negations is an OR again, data-weighted: ~large & (red | green)
    g = compile_expr("~(large | ~(red | green))", _DataRegistry("noise_conditional"), negation="complement",
                     and_mode="joint")
    assert {d.text: d.share for d in g.disjuncts} == pytest.approx(
        {"color.red & size.small": 1 / 3, "color.green & size.small": 2 / 3})
    # the ratio form keeps the compound as written: a repulsion from the OR's log-sum-exp
    g = compile_expr("~(circle | position(0.2, 0.2))", reg, negation="ratio")
    assert g.route == "lse" and [gr.negated for gr in g.groundings] == ["(circle | position(0.2, 0.2))"]


@pytest.mark.parametrize("and_mode", ["product", "joint"])
def test_a_negated_conjunction_is_every_other_combination_of_its_families(and_mode):
    reg = GaussianRegistry("noise_conditional")
    got = compile_expr("~(circle & red)", reg, negation="complement", and_mode=and_mode)
    want = compile_expr("(circle & green) | (circle & blue) | (square & red) | (square & green) | (square & blue)",
                        reg, and_mode=and_mode)
    assert got.route == want.route == "dnf"
    assert _rows(got) == pytest.approx(_rows(want))
    assert [d.share for d in got.disjuncts] == pytest.approx([0.2] * 5)
    # a negation inside the compound: ~(circle & ~red) holds for every square and the red circle
    got = compile_expr("~(circle & ~red)", reg, negation="complement", and_mode=and_mode)
    want = compile_expr("(circle & red) | (square & red) | (square & green) | (square & blue)", reg, and_mode=and_mode)
    assert _rows(got) == pytest.approx(_rows(want))
    # beside a positive value of one of its families, only the other family branches
    got = compile_expr("square & ~(square & ~blue)", reg, negation="complement", and_mode=and_mode)
    assert sorted(leaf.label for leaf in got.leaves if "prior" not in leaf.label) == (
        ["color.blue & shape.square"] if and_mode == "joint" else ["color.blue", "shape.square"])


def test_negated_compounds_take_the_data_shares_and_join_an_or():
    reg = _DataRegistry("noise_conditional")
    # ~(red & large) given circle: colour x size without (red, large) and the unseen (green, large)
    g = compile_expr("circle & ~(red & large)", reg, negation="complement", and_mode="joint")
    assert {d.text: round(d.share, 6) for d in g.disjuncts} == {
        "color.red & shape.circle & size.small": 0.142857, "color.green & shape.circle & size.small": 0.285714,
        "color.blue & shape.circle & size.small": 0.357143, "color.blue & shape.circle & size.large": 0.214286}
    # in a data-weighted OR the negated compound's combinations are the OR's regions, counted once
    g = compile_expr("large | ~(red | green)", reg, negation="complement", and_mode="joint")
    assert {d.text: d.share for d in g.disjuncts} == pytest.approx({
        "color.red & size.large": 0.3 / 0.7, "color.blue & size.large": 0.15 / 0.7,
        "color.blue & size.small": 0.25 / 0.7})
    assert "~red & ~green (not an earlier branch)" in g.or_weights.notice()


def test_a_negated_compound_that_nothing_satisfies_keeps_the_ratio_form():
    reg = GaussianRegistry("noise_conditional")
    for text, same in (("~(red | ~red)", "~red & red"), ("~(red & circle) & red & circle", "~(red & circle) & red & circle")):
        with pytest.warns(UserWarning, match="unsatisfiable"):
            g = compile_expr(text, reg, negation="complement")
        with pytest.warns(UserWarning, match="unsatisfiable"):
            want = compile_expr(same, reg, negation="ratio")
        assert g.route == want.route == "linear" and {gr.how for gr in g.groundings} == {"ratio"}
        assert g.linear_coefs == want.linear_coefs



# ---------------------------------------------------------------------------------------------
# Property: wherever the complement lowering and the data-weighted OR apply (no negation left in
# the ratio form, no OR in equal shares), the compiled mixture is exactly p(combination | expression):
# its branches are the combinations of colour x shape x size that satisfy the expression and that
# the data has, each with its share of the data among them.

_VALUES = {"color": ("red", "green", "blue"), "shape": ("circle", "square"), "size": ("small", "large")}
_COMBOS = [(c, s, z) for c in _VALUES["color"] for s in _VALUES["shape"] for z in _VALUES["size"]]
# a fixed joint table, one combination never seen in the data
_TABLE = {combo: (0.0 if combo == ("green", "square", "large") else 1.0 + (k * 7 % 5) / 4)
          for k, combo in enumerate(_COMBOS)}


class _JointTableRegistry(GaussianRegistry):
    """The analytic registry whose data has the joint shares _TABLE over colour x shape x size."""

    def value_shares(self, domain, families, given):
        order = ("color", "shape", "size")
        out: dict[tuple, float] = {}
        for combo, w in _TABLE.items():
            vals = dict(zip(order, combo))
            if any(r.params is not None or vals.get(r.family) != r.value for r in given):
                continue
            key = tuple(vals[f] for f in families)
            out[key] = out.get(key, 0.0) + w
        total = sum(out.values())
        return {k: v / total for k, v in out.items()} if total else None


def _repeats(e) -> bool:
    """Whether some conjunction repeats a term (`red & red` is 2·E_red by design, not a mixture)."""
    from conceptlang.compiler.or_weights import flatten_and, push_negations
    from conceptlang.syntax.ast import And, Not, Or

    if isinstance(e, And) or isinstance(e, Not) and isinstance(e.expr, (Or, Not)):
        flat = push_negations(flatten_and((e,)))  # as the complement lowering reads it
        if len(flat) == 1 and flat[0] is e:
            return _repeats(e.expr)
        return len(set(flat)) < len(flat) or any(_repeats(t) for t in flat)
    if isinstance(e, Or):
        return any(_repeats(t) for t in e.terms)
    return isinstance(e, Not) and _repeats(e.expr)


def _labels(assign: dict) -> dict:
    return {v: assign[f] == v for f, vals in _VALUES.items() for v in vals}


from hypothesis import HealthCheck, given, settings  # noqa: E402

from conceptlang.syntax import evaluate, unparse  # noqa: E402
from conceptlang.testing import expressions  # noqa: E402


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(leaves=[v for vals in _VALUES.values() for v in vals], weights=False, max_leaves=6))
def test_the_complement_mixture_is_the_data_given_the_expression(expr):
    import warnings

    reg = _JointTableRegistry("noise_conditional")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unsatisfiable expressions warn; they are skipped below
        g = compile_expr(expr, reg, negation="complement", and_mode="joint", free_families="data")
    holds = {combo: evaluate(expr, _labels(dict(zip(_VALUES, combo)))) for combo in _COMBOS}
    seen = {combo for combo in _COMBOS if holds[combo] and _TABLE[combo] > 0}
    exact = (seen and not _repeats(expr) and all(gr.how != "ratio" for gr in g.groundings)
             and (g.or_weights is None or g.or_weights.source == "data")
             and not any("left to the model" in n or "ratio form" in n for n in g.notices))
    if not exact:
        return
    branches = g.disjuncts if g.disjuncts is not None else None
    got: dict[tuple, float] = {}
    for d in branches or [None]:
        coefs = g.linear_coefs if d is None else d.coefs
        conds = [leaf.condition for leaf, c in zip(g.leaves, coefs) if c == 1.0 and len(leaf.condition) == 3]
        assert len(conds) == 1, (unparse(expr), [leaf.label for leaf in g.leaves])
        combo = tuple(conds[0][f] for f in _VALUES)
        got[combo] = got.get(combo, 0.0) + (1.0 if d is None else d.share)
    total = sum(_TABLE[c] for c in seen)
    assert got == pytest.approx({c: _TABLE[c] / total for c in seen}), unparse(expr)
