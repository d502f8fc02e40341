"""or_weights="data": an OR is the mixture over the value combinations that satisfy it, each with its
data probability (disjoint, so overlaps count once); equal shares where that does not apply, and as
an option. Expected weights are hand-computed from TableSharesRegistry.TABLE (tests/compiler/fakes.py)."""

from __future__ import annotations

import pytest
import torch

from conceptlang.compiler import UnsatisfiableWarning
from conceptlang.compiler import compile as compile_expr
from conceptlang.errors import CompileError
from conceptlang.models.analytic import GaussianRegistry
from tests.compiler.fakes import TableSharesRegistry

# P(color, shape) from the table: red circle .10, red square .20, green circle .15, green square .25,
# blue circle .05, blue square .25.


def _shares(g):
    return {d.text: round(d.share, 9) for d in g.disjuncts}


def test_overlapping_branches_are_weighted_by_their_disjoint_data_mass():
    # red | circle: red&circle .10, red&square .20, green&circle .15, blue&circle .05 (of .50)
    reg = TableSharesRegistry()
    g = compile_expr("red | circle", reg)
    assert g.route == "dnf" and _shares(g) == {
        "color.red & shape.circle": 0.2, "color.red & shape.square": 0.4,
        "color.green & shape.circle": 0.3, "color.blue & shape.circle": 0.1}
    assert reg.asked == [(("color", "shape"), ())]
    ow = g.or_weights
    assert ow.source == "data" and ow.families == ("color", "shape")
    assert [(t, round(w, 9)) for t, w in ow.written] == [("red", 0.6), ("circle (not an earlier branch)", 0.4)]
    assert any(n.startswith("OR branches weighted by the data's probability") and "red 0.600" in n for n in g.notices)
    # the same event written the other way round: the same mixture
    assert _shares(compile_expr("circle | red", TableSharesRegistry())) == _shares(g)
    # equal shares as written: each branch half, and red & circle drawn from both
    eq = compile_expr("red | circle", reg, or_weights="equal")
    assert sorted(d.share for d in eq.disjuncts) == [0.5, 0.5] and eq.or_weights.source == "equal"
    assert "or_weights=equal" in eq.or_weights.reason


def test_free_families_inside_each_branch_follow_the_data_given_the_branch():
    # as above, each branch then split by size given its colour and shape:
    # red&circle .2 → small .4 / large .6; red&square .4 → .5/.5; green&circle .3 and blue&circle .1 all small
    g = compile_expr("red | circle", TableSharesRegistry(), free_families="data", and_mode="joint")
    assert _shares(g) == {
        "color.red & shape.circle & size.small": 0.08, "color.red & shape.circle & size.large": 0.12,
        "color.red & shape.square & size.small": 0.2, "color.red & shape.square & size.large": 0.2,
        "color.green & shape.circle & size.small": 0.3, "color.blue & shape.circle & size.small": 0.1}
    assert all(len(leaf.refs) == 3 for leaf in g.leaves)
    assert [n for n in g.notices if "free families" in n] == [  # one notice for the OR, not one per branch
        "4 of the OR's 4 branches: their free families (size) drawn as the data has them given the branch "
        "(free_families=data)"]


def test_an_or_inside_a_conjunction_is_weighted_given_the_rest():
    # (red | blue) & square: red&square .20, blue&square .25 → 4/9, 5/9 (equal shares would give 1/2)
    g = compile_expr("(red | blue) & square", TableSharesRegistry())
    assert _shares(g) == {"color.red & shape.square": round(4 / 9, 9), "color.blue & shape.square": round(5 / 9, 9)}
    # a term outside the formula (a position) joins every branch; the weights stay the data's
    g = compile_expr("(red | green) & position(0.2, 0.3)", TableSharesRegistry())
    assert _shares(g) == {"position(0.2, 0.3) & color.red": round(0.3 / 0.7, 9),
                          "position(0.2, 0.3) & color.green": round(0.4 / 0.7, 9)}
    assert all(any(leaf.label == "position(0.2, 0.3)" and c != 0 for leaf, c in zip(g.leaves, d.coefs))
               for d in g.disjuncts)


def test_a_negation_inside_the_or_is_its_complement_weighted_by_the_data():
    # ~red | square, negation=complement: every combination but red&circle (.10): weights p / .90
    g = compile_expr("~red | square", TableSharesRegistry(), negation="complement")
    assert _shares(g) == {
        "color.red & shape.square": round(0.2 / 0.9, 9), "color.green & shape.circle": round(0.15 / 0.9, 9),
        "color.green & shape.square": round(0.25 / 0.9, 9), "color.blue & shape.circle": round(0.05 / 0.9, 9),
        "color.blue & shape.square": round(0.25 / 0.9, 9)}
    assert [(t, round(w, 9)) for t, w in g.or_weights.written] == [
        ("~red", round(0.7 / 0.9, 9)), ("square (not an earlier branch)", round(0.2 / 0.9, 9))]
    # with the ratio form a negation is a repulsion, not a set: equal shares, and why
    g = compile_expr("~red | square", TableSharesRegistry(), negation="ratio")
    assert g.or_weights.source == "equal" and "negation=ratio" in g.or_weights.reason
    assert any(n.startswith("OR branches drawn in equal shares: negation=ratio") for n in g.notices)


@pytest.mark.parametrize("text,why", [
    # a named place needs the data's joint frequencies (value_shares(..., joint=True)), which this table lacks
    ("red | position(0.2, 0.2)", "the models' registry gives no joint data frequencies for named places"),
    ("(position(0.2, 0.2) & position(0.8, 0.8)) | red", "a branch names two places of position (two objects)"),
])
def test_terms_without_a_data_probability_keep_equal_shares_with_a_notice(text, why):
    g = compile_expr(text, TableSharesRegistry())
    assert g.or_weights.source == "equal" and g.or_weights.reason.startswith(why)
    assert any(n == "OR branches drawn in equal shares: " + g.or_weights.reason for n in g.notices)


def test_a_branch_no_one_object_satisfies_is_not_drawn():
    """``(red & blue) | green``: no object is red and blue, so the data gives that branch weight 0;
    the OR is green's combinations in the data's shares, and the notice names the dropped branch
    (it used to fall back to equal shares: half the chains drew the impossible branch)."""
    reg = TableSharesRegistry()
    g = compile_expr("(red & blue) | green", reg)
    assert g.or_weights.source == "data" and g.or_weights.impossible == ["red & blue"]
    assert [(t, round(w, 9)) for t, w in g.or_weights.written] == [("green", 1.0)]
    assert any(n.endswith("; not drawn: red & blue (two values of one exclusive family, which no one object "
                          "has: probability 0 in the data)") for n in g.notices)
    assert g.or_weights.to_json()["impossible"] == ["red & blue"]
    # it scores as `green` does
    x, sigma = torch.randn(5, 2, dtype=torch.float64), torch.full((5,), 0.7, dtype=torch.float64)
    torch.testing.assert_close(g.energy(x, sigma), compile_expr("green", reg).energy(x, sigma), rtol=0, atol=0)
    # with shape beside it: green's two combinations in the data's shares (green circle .15, square .25)
    g = compile_expr("(red & blue & circle) | (green & square) | (green & circle)", reg)
    assert g.or_weights.impossible == ["red & blue & circle"]
    assert _shares(g) == {"color.green & shape.circle": round(0.15 / 0.4, 9),
                          "color.green & shape.square": round(0.25 / 0.4, 9)}


def test_a_weighted_or_keeps_the_data_weights_and_weights_the_values_each_branch_pins():
    """``2 * (red | circle)``: the branches and shares of ``red | circle``; each branch weights the
    values its disjunct as written pins (red for red & square, circle for green & circle), once."""
    reg = TableSharesRegistry()
    plain = compile_expr("red | circle", reg)
    g = compile_expr("2 * (red | circle)", reg)
    assert g.or_weights.source == "data" and g.or_weights.written == plain.or_weights.written
    assert sorted(round(d.share, 9) for d in g.disjuncts) == sorted(round(d.share, 9) for d in plain.disjuncts)
    assert sorted(d.text for d in g.disjuncts) == [
        "color.blue & 2 * shape.circle", "color.green & 2 * shape.circle", "shape.circle & 2 * color.red",
        "shape.square & 2 * color.red"]
    # a compound branch: the values it pins weighted together
    g = compile_expr("2 * ((red & square) | blue) & square", reg)
    assert sorted(d.text for d in g.disjuncts) == ["2 * (color.red & shape.square)", "shape.square & 2 * color.blue"]
    # a weight inside a negated compound does not change where it holds: the complement of red | blue
    g = compile_expr("~(2 * (red | blue)) & square", reg, negation="complement")
    ref = compile_expr("~(red | blue) & square", reg, negation="complement")

    def form(graph):
        return (graph.route, [leaf.label for leaf in graph.leaves], graph.linear_coefs,
                sorted((d.coefs, round(d.share, 12)) for d in graph.disjuncts or []))

    assert form(g) == form(ref)


def test_a_weighted_or_without_data_weights_is_refused_by_implicit_models_and_says_why():
    """With equal shares a weighted OR enters the energy with a coefficient ≠ 1, no mixture: implicit
    models cannot sample it, and the error names why the data weights did not apply."""
    assert compile_expr("2 * (red | circle)", TableSharesRegistry("implicit")).route == "dnf"
    with pytest.raises(CompileError, match=r"implicit models .* a weighted OR is such a mixture when its branches "
                                           r"take the data's weights, which did not apply here \(or_weights=equal"):
        compile_expr("2 * (red | circle)", TableSharesRegistry("implicit"), or_weights="equal")
    # an unsatisfiable one (two colours at once in every branch): the error says so
    with pytest.raises(CompileError, match=r"'2 \* \(red & blue \| red & green\)' is unsatisfiable \(no single "
                                           r"object can satisfy it"), pytest.warns(UnsatisfiableWarning):
        compile_expr("2 * (red & blue | red & green)", TableSharesRegistry("implicit"))


def test_the_refusal_names_why_the_data_weights_did_not_apply_with_the_options_as_given():
    """The compiler retries a complement-mode expression in the ratio form; the error still gives
    the reason of the form asked for (here two places in a branch, with more disjuncts than
    max_disjuncts allows to distribute the ORs), not the retry's."""
    from conceptlang.models.registry import load_registry

    text = "(circle & ~(circle & yellow) | position(0.3, 0.3) & position(0.7, 0.4)) & 1.5 * (~yellow | small)"
    compile_expr(text, load_registry())  # four disjuncts: distributed
    with pytest.raises(CompileError) as err:
        compile_expr(text, load_registry(), max_disjuncts=3)
    assert err.value.message.endswith("which did not apply here (a branch names two places of position (two "
                                      "objects), which have no one-object data probability)")
    assert "negation=ratio" not in err.value.message


def test_a_weighted_conjunction_of_values_beside_an_or_joins_its_formula():
    """``(red | square) & 2 * (~blue & ~circle)``: the weighted conjunction restricts the OR's
    combinations as the unweighted one does (red square .20, green square .25), each branch taking
    the weight on its values (it used to stay outside the formula, so the OR drew blue and circle
    branches that the conjunction then contradicted)."""
    reg = TableSharesRegistry()
    g = compile_expr("(red | square) & 2 * (~blue & ~circle)", reg, negation="complement")
    plain = compile_expr("(red | square) & ~blue & ~circle", TableSharesRegistry(), negation="complement")
    assert g.or_weights.source == "data"
    assert _shares(plain) == {"color.red & shape.square": round(0.2 / 0.45, 9),
                              "color.green & shape.square": round(0.25 / 0.45, 9)}
    assert _shares(g) == {f"2 * ({t})": w for t, w in _shares(plain).items()}
    assert [(t, round(w, 9)) for t, w in g.or_weights.written] == [
        ("red & ~blue & ~circle", round(0.2 / 0.45, 9)), ("square & ~blue & ~circle (not an earlier branch)",
                                                          round(0.25 / 0.45, 9))]
    # with the shipped models, (small | cyan) & 2 * (red & circle) is red circles only
    from conceptlang.models.registry import load_registry

    g = compile_expr("(small | cyan) & 2 * (red & circle)", load_registry())
    assert [b for b, _ in g.or_weights.branches] == ["color.red & shape.circle & size.small"]
    assert {leaf.condition["color"] for leaf in g.leaves if "color" in leaf.condition} == {"red"}


def test_a_branch_with_two_weights_keeps_every_value_it_pins():
    """``2 * (2 * (circle | ~blue & red) & cyan)``: the branch cyan circle pins circle at weight 4 and
    cyan at weight 2, two groups; both stay, each with its extra share (the second group used to
    drop the first one's value, so the shape was drawn free: cyan squares and triangles)."""
    from conceptlang.models.registry import load_registry

    reg = load_registry()
    g = compile_expr("2 * (2 * (circle | ~blue & red) & cyan)", reg)
    assert [b for b, _ in g.or_weights.branches] == ["color.cyan & shape.circle"]
    assert len(g.disjuncts) == 2  # the two sizes
    for d in g.disjuncts:
        row = {leaf.label: c for leaf, c in zip(g.leaves, d.coefs) if c != 0.0}
        full = [label for label in row if label.startswith("color.cyan & position(drawn) & shape.circle & size.")]
        assert len(full) == 1 and row[full[0]] == 1.0
        assert row["shape.circle"] == 3.0 and row["color.cyan"] == 1.0
    # faces: the branch blond_hair & 2 * eyeglasses keeps its hair
    g = compile_expr("3 * (blond_hair & 2 * eyeglasses | black_hair)", reg)
    hair: dict[str, set[str]] = {}
    for d in g.disjuncts:  # each disjunct's full leaf (all five families) names its hair
        hair.setdefault(d.group, set()).update(
            leaf.condition["hair"] for leaf, c in zip(g.leaves, d.coefs) if c > 0 and len(leaf.condition) == 5)
    assert hair == {"blond_hair & 2 * eyeglasses": {"blond_hair"}, "black_hair": {"black_hair"}}


def test_two_places_reached_through_negations_are_one_object_near_both():
    """``position(0.6, 0.6) & ~(~position(0.5, 0.3) & ~yellow)``: a negation places no object
    (docs/language.md), so its branch ``position(0.6, 0.6) & position(0.5, 0.3)`` asks one object to
    be near both points, which lie farther apart than twice the tolerance: no data example has it,
    and the OR is yellow's (the branch used to read as two objects, so the OR fell back to equal
    shares, and in a larger OR the compiler refused it)."""
    from conceptlang.models.registry import load_registry

    reg = load_registry()
    g = compile_expr("position(0.6, 0.6) & ~(~position(0.5, 0.3) & ~yellow)", reg)
    assert g.model_set is None and g.or_weights.source == "data"
    assert g.or_weights.impossible == g.or_weights.apart == ["position(0.6, 0.6) & position(0.5, 0.3)"]
    assert [(t, round(w, 9)) for t, w in g.or_weights.written] == [("position(0.6, 0.6) & yellow", 1.0)]
    assert any(n.endswith("; not drawn: position(0.6, 0.6) & position(0.5, 0.3) (two places farther apart than "
                          "0.2, which no one object has: probability 0 in the data)") for n in g.notices)
    assert {leaf.condition["color"] for leaf in g.leaves if "color" in leaf.condition} == {"yellow"}
    assert {leaf.condition["position"].near for leaf in g.leaves if "position" in leaf.condition} == {(0.6, 0.6)}
    # the random draw that found it compiles, with the branch left out
    g = compile_expr("triangle | red | position(0.6, 0.6) & ~(0.5 * ~position(0.5, 0.3) & 2 * ~(yellow | yellow))", reg)
    assert g.route == "dnf" and g.or_weights.source == "data"
    assert [t for t, _ in g.or_weights.written] == ["triangle", "red (not an earlier branch)",
                                                    "position(0.6, 0.6) & yellow (not an earlier branch)"]
    # closer points: the branch is one object drawn near both (and the rest of the place, yellow)
    g = compile_expr("position(0.6, 0.6) & ~(~position(0.55, 0.55) & ~yellow)", reg)
    assert g.or_weights.impossible == [] and g.model_set is None
    assert {(p.near, p.away) for p in (leaf.condition["position"] for leaf in g.leaves if "position" in leaf.condition)} \
        == {((0.6, 0.6, 0.55, 0.55), False), ((0.6, 0.6), False)}


def test_without_the_data_frequencies_the_branches_get_equal_shares():
    g = compile_expr("red | circle", GaussianRegistry("noise_conditional"))  # no value_shares hook
    assert sorted(d.share for d in g.disjuncts) == [0.5, 0.5]
    assert g.or_weights.reason == "the models' registry has no data frequencies (value_shares)"
    reg = TableSharesRegistry()
    reg.FAMILIES = ("shape", "size")  # the table no longer covers color: value_shares answers None
    reg.TABLE = {("circle", "small"): 1.0}
    g = compile_expr("red | circle", reg)
    assert g.or_weights.source == "equal" and "no data frequencies for color, shape" in g.or_weights.reason
    # no combination in the data satisfies the OR
    with pytest.warns(UserWarning, match="unsatisfiable"):
        g = compile_expr("(red & ~red) | (blue & ~blue)", TableSharesRegistry(), negation="complement")
    assert g.or_weights.source == "equal" and "no example of the data satisfies the OR" in g.or_weights.reason


def test_too_many_combinations_keep_equal_shares():
    g = compile_expr("red | circle", TableSharesRegistry(), max_disjuncts=3)
    assert g.or_weights.source == "equal" and "4 value combinations exceed max_disjuncts = 3" in g.or_weights.reason
    assert len(g.disjuncts) == 2


def test_no_mixture_or_no_record_and_given_log_z_wins():
    reg = TableSharesRegistry()
    for text in ("red & circle", "~(red | circle)", "-2 * (red | circle) & square"):
        assert compile_expr(text, reg).or_weights is None
    g = compile_expr("red | circle", reg, log_z=(0.0, 1.0))
    assert g.or_weights is None and reg.asked == []
    assert compile_expr("red | circle", reg, tau=0.5, or_mode="lse").or_weights is None


def test_explain_and_json_show_the_branch_weights():
    g = compile_expr("red | circle", TableSharesRegistry())
    text = g.explain()
    assert "OR branch weights (or_weights=data): each combination of color, shape" in text
    assert "  0.600  red" in text and "  0.400  circle (not an earlier branch)" in text
    assert "log Z of each OR branch: −log of its data probability" in text
    js = g.to_json()["or_weights"]
    assert js["source"] == "data" and js["families"] == ["color", "shape"]
    assert [(b["text"], round(b["weight"], 9)) for b in js["branches"]] == [
        ("color.red & shape.circle", 0.2), ("color.red & shape.square", 0.4),
        ("color.green & shape.circle", 0.3), ("color.blue & shape.circle", 0.1)]
    eq = compile_expr("red | circle", GaussianRegistry())
    assert "note: OR branches drawn in equal shares: the models' registry has no data frequencies" in eq.explain()
    assert eq.to_json()["or_weights"]["source"] == "equal"


def test_or_weights_option_is_validated():
    with pytest.raises(CompileError, match="or_weights must be one of data, equal; got 'prior'"):
        compile_expr("red | circle", TableSharesRegistry(), or_weights="prior")


@pytest.mark.parametrize("shares,msg", [
    ([("red", "circle")], "returned list, not a dict of shares"),
    ({("red",): 1.0}, "gave the key ('red',), not one value per family of (color, shape)"),
    ({("red", "hexagon"): 1.0}, "names 'hexagon', not a value of shape (circle, square)"),
    ({("red", "circle"): -0.1}, "gave ('red', 'circle') the share -0.1; shares must be finite and ≥ 0"),
    ({("red", "circle"): float("nan")}, "the share nan"),
])
def test_malformed_data_shares_are_a_clear_error(shares, msg):
    with pytest.raises(CompileError, match="the registry's value_shares") as err:
        compile_expr("red | circle", TableSharesRegistry(shares=shares))
    assert msg in str(err.value)


def _groups(g):
    return {d.text: d.group for d in g.disjuncts}


def test_each_disjunct_names_the_branch_as_written_it_belongs_to():
    # data-weighted: a combination counts under the first branch it satisfies (red & circle → red)
    g = compile_expr("red | circle", TableSharesRegistry(), free_families="data", and_mode="joint")
    assert _groups(g) == {
        "color.red & shape.circle & size.small": "red", "color.red & shape.circle & size.large": "red",
        "color.red & shape.square & size.small": "red", "color.red & shape.square & size.large": "red",
        "color.green & shape.circle & size.small": "circle", "color.blue & shape.circle & size.small": "circle"}
    # written order, whatever order the disjuncts are kept in; counts from each chain's disjunct index
    index = {d.text: i for i, d in enumerate(g.disjuncts)}
    drawn = [index["color.blue & shape.circle & size.small"]] * 3 + [index["color.red & shape.circle & size.large"]] * 2
    assert g.branch_groups(drawn) == [("red", 2), ("circle", 3)]
    assert g.branch_groups(torch.tensor(drawn)) == [("red", 2), ("circle", 3)]
    assert g.to_json()["disjuncts"][index["color.red & shape.square & size.large"]]["branch"] == "red"
    assert "(branch circle)" in g.explain()
    assert "  by branch as written: red 0.600 (4 disjuncts), circle 0.400 (2 disjuncts)\n" in g.explain()
    # in equal shares as written, each branch is its own disjunct (a red circle may come from either)
    eq = compile_expr("circle | red", TableSharesRegistry(), or_weights="equal")
    assert sorted(_groups(eq).values()) == ["circle", "red"]
    red = next(i for i, d in enumerate(eq.disjuncts) if d.group == "red")
    assert eq.branch_groups([red, red, 1 - red]) == [("circle", 1), ("red", 2)]


def test_two_ors_as_written_name_one_branch_of_each_and_no_or_names_none():
    g = compile_expr("(red | blue) & (circle | square)", GaussianRegistry("noise_conditional"))
    assert _groups(g) == {"shape.circle & color.red": "red & circle", "shape.circle & color.blue": "blue & circle",
                          "shape.square & color.red": "red & square", "shape.square & color.blue": "blue & square"}
    index = {d.group: i for i, d in enumerate(g.disjuncts)}
    drawn = [index["blue & square"], index["red & square"], index["red & square"]]
    assert g.branch_groups(drawn) == [("red & circle", 0), ("red & square", 2), ("blue & circle", 0),
                                      ("blue & square", 1)]
    # free families enumerated in a conjunction are disjuncts but no branch of the expression
    g = compile_expr("red & circle", TableSharesRegistry(), free_families="data", and_mode="joint")
    assert len(g.disjuncts) == 2 and {d.group for d in g.disjuncts} == {None}
    assert g.branch_groups([0, 1]) is None


def test_a_weighted_value_in_an_or_keeps_the_data_weights_and_weights_its_branches():
    # `2 * red | circle`: the combinations and shares of `red | circle`; the branches counted under
    # `2 * red` carry red with weight 2 (product mode: one more E_red, one less E_prior)
    reg = TableSharesRegistry()
    g = compile_expr("2 * red | circle", reg, and_mode="product")
    plain = compile_expr("red | circle", TableSharesRegistry(), and_mode="product")
    assert {t.replace("2 * ", ""): v for t, v in _shares(g).items()} == _shares(plain)
    assert "2 * color.red & shape.circle" in _shares(g) and g.or_weights.source == "data"
    assert [(t, round(w, 9)) for t, w in g.or_weights.written] == [("2 * red", 0.6), ("circle (not an earlier branch)", 0.4)]
    lab = {leaf.label: i for i, leaf in enumerate(g.leaves)}
    plab = {leaf.label: i for i, leaf in enumerate(plain.leaves)}
    for d, p in zip(sorted(g.disjuncts, key=lambda d: d.text.replace("2 * ", "")),
                    sorted(plain.disjuncts, key=lambda d: d.text)):
        mine = {k: d.coefs[i] for k, i in lab.items() if d.coefs[i] != 0.0}
        theirs = {k: p.coefs[i] for k, i in plab.items() if p.coefs[i] != 0.0}
        if d.group == "2 * red":
            theirs["color.red"] = theirs.get("color.red", 0.0) + 1.0
            theirs["prior"] = theirs.get("prior", 0.0) - 1.0
        assert mine == {k: v for k, v in theirs.items() if v != 0.0}, d.text
    assert {d.group for d in g.disjuncts} == {"2 * red", "circle"}


def test_shipped_faces_design_card_weights_follow_the_data():
    # faces data: attributes independent, hair uniform over 4 values, each yes/no attribute p = 1/2
    # (the registry counts 60,000 generator draws): P(male & smiling) = 1/4, P(~black_hair) = 3/4,
    # P(either) = 13/16, so male & smiling gets 4/13 and the rest 9/13, not 1/2 each.
    from conceptlang.models.registry import load_registry

    g = compile_expr("(male & smiling) | ~black_hair", load_registry())
    ow = g.or_weights
    assert ow.source == "data" and ow.families == ("hair", "male", "smiling") and len(ow.branches) == 13
    (t0, w0), (t1, w1) = ow.written
    assert t0 == "male & smiling" and t1 == "~black_hair (not an earlier branch)"
    assert w0 == pytest.approx(4 / 13, abs=0.01) and w1 == pytest.approx(9 / 13, abs=0.01)
    assert "hair.blond_hair & male.<none> & smiling.<none>" in [t for t, _ in ow.branches]
    assert sum(d.share for d in g.disjuncts) == pytest.approx(1.0)
    male = sum(d.share for d in g.disjuncts if "male.male" in d.text)
    assert male == pytest.approx((4 + 3) / 13, abs=0.015)  # P(male | E) = (1/4 + 3/16) / (13/16)


def _data_probability(text, n=200_000):
    """P(expression) and P(expression and each given test) on fresh scenes generator labels,
    evaluated with the language's semantics (independent of the registry's share tables)."""
    from conceptlang.data import label_arrays
    from conceptlang.syntax import evaluate, parse

    labels = label_arrays("scenes", n, seed=123, split="domain").to_dicts()
    expr = parse(text)
    return [lab for lab in labels if evaluate(expr, lab)]


def test_named_places_inside_an_or_are_regions_weighted_by_the_data():
    """Far-apart named places cut the canvas like the values of a family: near each point, or away
    from all. ``~(circle & position(0.5, 0.5))`` is ``~circle`` or a circle away from the point,
    each by its data probability; each branch is one joint condition with its free families drawn."""
    from conceptlang.models.registry import load_registry
    from conceptlang.syntax import evaluate, parse

    reg = load_registry()
    g = compile_expr("~(circle & position(0.5, 0.5))", reg)
    assert g.or_weights.source == "data" and g.or_weights.families == ("shape", "position")
    kept = _data_probability("~(circle & position(0.5, 0.5))")
    not_circle = sum(evaluate(parse("~circle"), lab) for lab in kept) / len(kept)
    written = dict(g.or_weights.written)
    assert written["~circle"] == pytest.approx(not_circle, abs=0.01)
    assert written["~position(0.5, 0.5) (not an earlier branch)"] == pytest.approx(1 - not_circle, abs=0.01)
    # the circle branches are drawn away from the point; the others near it or away from it
    conds = [leaf.condition for leaf in g.leaves if "shape" in leaf.condition]
    assert {(c["shape"], c["position"].away) for c in conds} == {
        ("circle", True), ("square", True), ("square", False), ("triangle", True), ("triangle", False)}
    assert all(c["position"].near == (0.5, 0.5) for c in conds)
    assert {c["color"] for c in conds if c["shape"] == "circle"} == {"red", "green", "blue", "yellow", "purple", "cyan"}
    # an OR of places inside a conjunction: each branch near one point, weighted by the data
    g = compile_expr("square & (position(0.3, 0.3) | position(0.7, 0.7))", reg)
    kept = _data_probability("square & (position(0.3, 0.3) | position(0.7, 0.7))")
    near = sum(evaluate(parse("position(0.3, 0.3)"), lab) for lab in kept) / len(kept)
    assert dict(g.or_weights.written)["square & position(0.3, 0.3)"] == pytest.approx(near, abs=0.02)
    assert {leaf.condition["position"].near for leaf in g.leaves if "shape" in leaf.condition} == {(0.3, 0.3), (0.7, 0.7)}
    # places closer than twice the tolerance overlap: near one only, near both, by the data
    text = "position(0.3, 0.3) | position(0.4, 0.3) & red"
    g = compile_expr(text, reg)
    kept = _data_probability(text)
    first = sum(evaluate(parse("position(0.3, 0.3)"), lab) for lab in kept) / len(kept)
    assert g.or_weights.source == "data"
    assert dict(g.or_weights.written)["position(0.3, 0.3)"] == pytest.approx(first, abs=0.02)
    assert dict(g.or_weights.written)["position(0.4, 0.3) & red (not an earlier branch)"] == pytest.approx(1 - first, abs=0.02)
    drawn = {(c["position"].near, c["position"].avoid) for c in (leaf.condition for leaf in g.leaves)
             if "shape" in c}
    assert drawn == {((0.3, 0.3), (0.4, 0.3)), ((0.4, 0.3), (0.3, 0.3)), ((0.3, 0.3, 0.4, 0.3), ())}
    # only red is drawn near (0.4, 0.3) away from (0.3, 0.3); every colour elsewhere
    colours = {}
    for c in (leaf.condition for leaf in g.leaves if "shape" in leaf.condition):
        colours.setdefault(c["position"].near, set()).add(c["color"])
    assert colours[(0.4, 0.3)] == {"red"} and len(colours[(0.3, 0.3)]) == len(colours[(0.3, 0.3, 0.4, 0.3)]) == 6
    # where those regions cannot be drawn: equal shares, and why
    for opts in ({"negation": "ratio"}, {"named_positions": "point"}):
        g = compile_expr("position(0.3, 0.3) | position(0.4, 0.3)", reg, **opts)
        assert g.or_weights.source == "equal" and "closer than twice the position tolerance" in g.or_weights.reason


def test_close_places_keep_their_regions_when_free_families_outgrow_max_disjuncts():
    """The cells of close places times the free shape and size outgrow ``max_disjuncts``: the
    retry keeps the cells and their data shares, drawn as before, and leaves only the free discrete
    families to the model (13 branches: 6 colours near (0.3, 0.3) only, red near (0.4, 0.3) only, 6
    colours near both). Leaving every free family to the model would lose the cells, and the
    shipped implicit model would then refuse the negated form of such an OR."""
    from conceptlang.models.registry import load_registry

    reg = load_registry()
    text = "position(0.3, 0.3) | position(0.4, 0.3) & red"
    full = compile_expr(text, reg)
    g = compile_expr(text, reg, max_disjuncts=20)
    assert len(full.disjuncts) > 20 and len(g.disjuncts) == 13
    assert g.or_weights.source == "data" and g.or_weights.written == full.or_weights.written
    assert any("outgrew max_disjuncts = 20; lowered with its free discrete families left to the model" in n
               for n in g.notices)

    def cells(graph):
        return {(leaf.condition["position"].near, leaf.condition["position"].avoid) for leaf in graph.leaves
                if "position" in leaf.condition}

    assert cells(g) == cells(full)
    assert {tuple(sorted(leaf.condition)) for leaf in g.leaves} == {("color", "position")}
    # the pushed negation of a three-place OR: 23 cells and colours × 6 shapes and sizes = 138
    # branches, within the default bound; past a bound of 128, the 23 cells alone
    text = "~(~position(0.3, 0.3) & ~position(0.5, 0.6) & (~position(0.4, 0.6) | cyan))"
    for bound, branches in ((None, 138), (128, 23)):
        g = compile_expr(text, reg, **({} if bound is None else {"max_disjuncts": bound}))
        assert g.route == "dnf" and len(g.disjuncts) == branches and g.or_weights.source == "data"
        assert sum(d.share for d in g.disjuncts) == pytest.approx(1.0, abs=1e-9)


def test_the_cells_of_close_named_places_partition_the_data():
    """Three places each within 0.2 of the others: the cells (near each set of points that can hold
    together and away from the rest close to them, and away from all) are disjoint and cover
    the canvas, so their joint data shares sum to 1 exactly (the same label draws), and the cells
    where a point holds sum to that point's own share."""
    from conceptlang.compiler.or_weights import Literal, _cells
    from conceptlang.interface import ConceptRef
    from conceptlang.models.registry import load_registry

    reg = load_registry()
    pts = {"a": (0.5, 0.5), "b": (0.58, 0.5), "c": (0.54, 0.58), "far": (0.2, 0.2)}
    points = {k: Literal("position", k, False, k, point=v) for k, v in pts.items()}
    cells = list(_cells("scenes", ("position",), points))
    names = [cell[0] for cell, _ in cells]
    assert names == [("a",), ("b",), ("c",), ("far",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c"), None]
    shares = {cell[0]: reg.value_shares("scenes", (), given, joint=True)[()] for cell, given in cells}
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-12)
    for k, v in pts.items():
        own = reg.value_shares("scenes", (), (ConceptRef("scenes", "position", params=v),), joint=True)[()]
        assert sum(s for cell, s in shares.items() if cell is not None and k in cell) == pytest.approx(own, abs=1e-12)
    assert shares[("a", "b", "c")] > 0 and shares[("far",)] > 0
