"""The compiler: resolution, lowering semantics, sharing, routes, checks and explain."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from conceptlang.compiler import SAMPLER_NEEDS, UnsatisfiableWarning, compile
from conceptlang.errors import CompileError, NameResolutionError, ParseError
from conceptlang.interface import ConceptRef
from conceptlang.models.analytic import GAUSS_CONCEPTS, GAUSS_PRIOR, GaussianRegistry
from conceptlang.syntax import parse_expr
from tests.compiler.fakes import TwoDomainRegistry

# float64 points; the models keep their Gaussian parameters in float32, so closed forms agree to ~1e-7.
X = torch.tensor([[0.1, -0.2], [0.5, 0.3], [-0.6, 0.05], [0.0, 0.9]], dtype=torch.float64).view(4, 2, 1, 1)


def leaf_e(g, x=X):
    """Closed-form explicit energy of a Gaussian at the points x: (B,)."""
    d = x.view(-1, 2) - torch.tensor(g.mean, dtype=x.dtype)
    return d.pow(2).sum(1) / (2 * g.scale**2)


RED, GREEN, BLUE = (GAUSS_CONCEPTS["color"][c] for c in ("red", "green", "blue"))
CIRCLE, SQUARE = GAUSS_CONCEPTS["shape"]["circle"], GAUSS_CONCEPTS["shape"]["square"]
LARGE = GAUSS_CONCEPTS["size"]["large"]


def energy(text, reg=None, **opts):
    g = compile(text, reg or GaussianRegistry(), **opts)
    return g.energy(X)[0]


# -- resolution -----------------------------------------------------------------------------------

def test_bare_qualified_and_parameterised_names_resolve():
    g = compile("red & shape.circle & position(0.25, 0.75)", GaussianRegistry())
    assert g.domain == "gauss"
    refs = sorted((leaf.ref for leaf in g.leaves), key=lambda r: r.family)
    assert refs == [ConceptRef("gauss", "color", "red"), ConceptRef("gauss", "position", params=(0.25, 0.75)),
                    ConceptRef("gauss", "shape", "circle")]


def test_unknown_name_suggests_and_points_at_it():
    with pytest.raises(NameResolutionError) as err:
        compile("circle & rde", GaussianRegistry())
    msg = str(err.value)
    assert "unknown concept 'rde'" in msg and "did you mean 'red'" in msg
    assert "line 1, column 10" in msg and msg.rstrip().endswith("^")


def test_unknown_family_value_suggests_the_qualified_name():
    with pytest.raises(NameResolutionError, match=r"did you mean 'color\.red'"):
        compile("color.rde", GaussianRegistry())


def test_ambiguous_name_lists_candidates():
    reg = TwoDomainRegistry()
    with pytest.raises(NameResolutionError) as err:
        compile("warm", reg)  # tone.warm and hue.warm in the mirror domain
    msg = str(err.value)
    assert "ambiguous concept 'warm'" in msg and "tone.warm (mirror)" in msg and "hue.warm (mirror)" in msg


def test_other_concepts_pick_the_domain_of_a_shared_name():
    reg = TwoDomainRegistry()
    with pytest.raises(NameResolutionError, match="ambiguous concept 'red'"):
        compile("red", reg)  # color.red exists in gauss and mirror
    g = compile("red & circle", reg)  # circle exists only in gauss
    assert g.domain == "gauss"
    assert compile("red & tone.warm", reg).domain == "mirror"


def test_mixing_domains_is_an_error():
    with pytest.raises(CompileError, match="different domains"):
        compile("circle & tone.warm", TwoDomainRegistry())


@pytest.mark.parametrize("text,match", [
    ("position(0.5) & red", r"position takes 2 argument\(s\)"),
    ("position(0.5, 1.5)", r"argument y=1.5 is outside \[0, 1\]"),
    ("position", "parameterised concept"),
    ("red(1)", "takes no arguments"),
])
def test_parameter_errors(text, match):
    with pytest.raises((CompileError, NameResolutionError), match=match):
        compile(text, GaussianRegistry())


def test_definitions_expand_and_cycles_and_shadowing_are_errors():
    a = energy("warm = red & ~large; warm & circle")
    b = energy("red & ~large & circle")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with pytest.raises(NameResolutionError, match="a1 -> b1 -> a1"):
        compile("a1 = b1 & red; b1 = a1; b1", GaussianRegistry())
    with pytest.raises(NameResolutionError, match="shadows the concept color.red"):
        compile("red = circle; red & large", GaussianRegistry())


def test_parse_errors_pass_through():
    with pytest.raises(ParseError):
        compile("red & ", GaussianRegistry())


@pytest.mark.parametrize("opts,match", [
    ({"alpha": 0.0}, "alpha must be in"), ({"alpha": 1.5}, "alpha must be in"), ({"tau": 0}, "tau"),
    ({"and_mode": "min"}, "and_mode"), ({"or_mode": "x"}, "or_mode"), ({"bogus": 1}, "unknown compile option"),
    ({"alpha": float("nan")}, "finite"), ({"log_z": "estimate"}, "log_z"),
])
def test_bad_options(opts, match):
    with pytest.raises(CompileError, match=match):
        compile("red", GaussianRegistry(), **opts)


# -- semantics --------------------------------------------------------------------------------------

def test_and_is_the_sum_of_energies():
    torch.testing.assert_close(energy("red & circle"), leaf_e(RED) + leaf_e(CIRCLE), rtol=1e-6, atol=1e-6)


def test_registry_suggests_alpha_and_and_mode_but_options_win():
    reg = GaussianRegistry(settings={"alpha": 0.25, "and_mode": "product"})
    g = compile("red & ~circle", reg)
    assert (g.options["alpha"], g.options["and_mode"]) == (0.25, "product")
    # product mode: E_prior + (E_red − E_prior) − α(E_circle − E_prior)
    p = leaf_e(GAUSS_PRIOR)
    torch.testing.assert_close(g.energy(X)[0], p + (leaf_e(RED) - p) - 0.25 * (leaf_e(CIRCLE) - p), rtol=1e-6, atol=1e-6)
    g = compile("red & ~circle", reg, and_mode="sum")
    assert (g.options["alpha"], g.options["and_mode"]) == (0.25, "sum")
    torch.testing.assert_close(g.energy(X)[0], leaf_e(RED) - 0.25 * leaf_e(CIRCLE), rtol=1e-6, atol=1e-6)
    g = compile("red & ~circle", reg, alpha=0.5, and_mode="sum")
    assert (g.options["alpha"], g.options["and_mode"]) == (0.5, "sum")
    with pytest.raises(CompileError, match="and_mode must be one of"):
        compile("red", GaussianRegistry(settings={"and_mode": "min"}))


def test_negation_is_grounded_by_the_positive_part():
    g = compile("red & ~circle", GaussianRegistry(), alpha=0.3)
    torch.testing.assert_close(g.energy(X)[0], leaf_e(RED) - 0.3 * leaf_e(CIRCLE), rtol=1e-6, atol=1e-6)
    (gr,) = g.groundings
    assert gr.grounded_by == "positive part" and gr.positive == "red" and gr.alpha == 0.3


def test_bare_negation_is_grounded_by_the_prior():
    g = compile("~circle", GaussianRegistry(), alpha=0.5)
    torch.testing.assert_close(g.energy(X)[0], leaf_e(GAUSS_PRIOR) - 0.5 * leaf_e(CIRCLE), rtol=1e-6, atol=1e-6)
    assert g.groundings[0].grounded_by == "prior"
    assert "grounded by the domain prior" in g.explain()


def test_all_negative_conjunction_gets_one_prior():
    e = energy("~circle & ~red", alpha=0.5)
    torch.testing.assert_close(e, leaf_e(GAUSS_PRIOR) - 0.5 * (leaf_e(CIRCLE) + leaf_e(RED)), rtol=1e-6, atol=1e-6)


def test_negated_subexpression_and_nested_negation_lowered_as_written():
    a = 0.5
    inner = leaf_e(GAUSS_PRIOR) - a * leaf_e(RED)  # ~red alone
    torch.testing.assert_close(energy("circle & ~~red", alpha=a), leaf_e(CIRCLE) - a * inner, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(energy("circle & ~(red & large)", alpha=a),
                               leaf_e(CIRCLE) - a * (leaf_e(RED) + leaf_e(LARGE)), rtol=1e-6, atol=1e-6)


def test_weights_scale_and_negative_weights_are_grounded():
    torch.testing.assert_close(energy("2.5 * red & circle"), 2.5 * leaf_e(RED) + leaf_e(CIRCLE), rtol=1e-6, atol=1e-6)
    g = compile("-1 * red", GaussianRegistry())
    torch.testing.assert_close(g.energy(X)[0], leaf_e(GAUSS_PRIOR) - leaf_e(RED), rtol=1e-6, atol=1e-6)
    assert g.groundings[0].grounded_by == "prior"


def test_or_is_negative_log_sum_exp_with_temperature_and_log_z():
    tau = 0.7
    e = energy("red | circle", tau=tau, log_z=(0.2, -0.4), or_mode="lse")
    ref = -tau * torch.logsumexp(torch.stack([-leaf_e(RED) / tau - 0.2, -leaf_e(CIRCLE) / tau + 0.4]), 0)
    torch.testing.assert_close(e, ref, rtol=1e-6, atol=1e-6)


def test_product_and_mode_subtracts_the_prior():
    e = energy("red & circle & large", and_mode="product")
    ref = leaf_e(RED) + leaf_e(CIRCLE) + leaf_e(LARGE) - 2 * leaf_e(GAUSS_PRIOR)
    torch.testing.assert_close(e, ref, rtol=1e-6, atol=1e-6)
    e = energy("red & ~circle", and_mode="product", alpha=0.5)
    ref = leaf_e(RED) - 0.5 * (leaf_e(CIRCLE) - leaf_e(GAUSS_PRIOR))
    torch.testing.assert_close(e, ref, rtol=1e-6, atol=1e-6)


# -- identities (bit-identical where the brief says so) ----------------------------------------------

@pytest.mark.parametrize("mode", ["sum", "product"])
def test_identities_are_exact(mode):
    def e(t):
        return energy(t, and_mode=mode)

    assert torch.equal(e("red & circle"), e("circle & red"))
    assert torch.equal(e("(red & circle) & large"), e("red & (circle & large)"))
    assert torch.equal(e("2 * red"), e("red & red"))
    assert torch.equal(e("3 * red & circle"), e("red & circle & red & red"))
    assert torch.equal(e("red | circle"), e("circle | red"))
    assert torch.equal(e("(red | circle) | large"), e("red | (circle | large)"))


def test_or_of_a_branch_with_itself_is_the_branch_minus_tau_log_2():
    for tau in (1.0, 0.5):
        a = energy("red & circle", tau=tau)
        b = energy("(red & circle) | (red & circle)", tau=tau, or_mode="lse")
        torch.testing.assert_close(b, a - tau * math.log(2.0), rtol=0, atol=1e-12)


def test_identical_leaves_and_subexpressions_are_shared():
    g = compile("(red & circle & ~large) | (red & circle & ~large & ~red) | red", GaussianRegistry())
    assert sorted(leaf.label for leaf in g.leaves) == ["color.red", "shape.circle", "size.large"]
    g2 = compile("a = red & circle; a | (a & large)", GaussianRegistry())
    g3 = compile("(red & circle) | (red & circle & large)", GaussianRegistry())
    assert torch.equal(g2.energy(X)[0], g3.energy(X)[0])
    assert len(g2.nodes) == len(g3.nodes)


def test_each_model_is_evaluated_once_per_call_with_stacked_conditions():
    reg = GaussianRegistry(joint=True)
    g = compile("(red & circle) | (~large & position(0.5, 0.5))", reg)
    model = reg.prior_model
    before = model.forward_calls
    total, per_leaf = g.energy(X)
    assert model.forward_calls == before + 1
    assert per_leaf.shape == (4, len(g.leaves)) and total.shape == (4,)
    # Per-family layout: one call per distinct model.
    reg2 = GaussianRegistry(joint=False)
    g2 = compile("(red & circle) | ~large", reg2)
    calls = {m.name: m.forward_calls for m in g2.models}
    g2.energy(X)
    assert {m.name: m.forward_calls - calls[m.name] for m in g2.models} == {m.name: 1 for m in g2.models}
    assert len(g2.models) == 4  # color, shape, size, prior
    torch.testing.assert_close(g.energy(X)[1][:, 0], g2.energy(X)[1][:, 0])


def test_cpu_slicing_of_stacked_batches_gives_the_same_numbers(monkeypatch):
    g = compile("(red & ~circle) | large", GaussianRegistry(), or_mode="lse")
    whole_e, whole_s = g.energy(X)[0], g.score(X)
    g.cpu_chunk_values = 6  # 3 two-value rows per model call
    calls = g.models[0].forward_calls
    torch.testing.assert_close(g.energy(X)[0], whole_e, rtol=0, atol=1e-12)
    assert len(g.leaves) == 3 and g.models[0].forward_calls - calls == 4  # 12 rows in slices of 3
    torch.testing.assert_close(g.score(X), whole_s, rtol=0, atol=1e-12)
    lin = compile("red & ~circle", GaussianRegistry())
    ref = lin.score(X)
    lin.cpu_chunk_values = 2
    torch.testing.assert_close(lin.score(X), ref, rtol=0, atol=1e-12)


def test_cpu_slices_keep_each_chains_rows_together():
    # The linear route stacks a chain's leaves together: 4 chains × 3 leaves. Slices of up to 4 rows
    # end where the image changes, so no chain is split (a guided model's prior row stays shared);
    # a run longer than a slice is split at the slice size.
    g = compile("red & circle & large", GaussianRegistry(), and_mode="sum")
    model = g.models[0]
    sizes = []
    orig = model.score
    model.score = lambda x, c, s: (sizes.append(x.shape[0]), orig(x, c, s))[1]
    x = X[:4]
    ref = g.score(x)
    g.cpu_chunk_values = 8  # 4 two-value rows
    sizes.clear()
    torch.testing.assert_close(g.score(x), ref, rtol=0, atol=1e-12)
    assert sizes == [3, 3, 3, 3]
    g.cpu_chunk_values = 4  # 2 rows: each chain's run of 3 is split 2 + 1
    sizes.clear()
    torch.testing.assert_close(g.score(x), ref, rtol=0, atol=1e-12)
    assert sizes == [2, 1] * 4


def test_per_leaf_energies_are_the_leaves():
    g = compile("red & ~circle", GaussianRegistry())
    _, per = g.energy(X)
    col = {leaf.label: leaf.index for leaf in g.leaves}
    torch.testing.assert_close(per[:, col["color.red"]], leaf_e(RED), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(per[:, col["shape.circle"]], leaf_e(CIRCLE), rtol=1e-6, atol=1e-6)


def test_score_matches_autograd_of_the_energy():
    g = compile("(red & ~large) | circle", GaussianRegistry(), or_mode="lse")
    x = X.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(g.energy(x)[0].sum(), x)
    torch.testing.assert_close(g.score(X), -grad)


def test_deep_nesting_compiles_or_fails_cleanly():
    g = compile("~" * 3000 + "red", GaussianRegistry())
    assert torch.isfinite(g.energy(X)[0]).all()
    text = "(" * 1500 + "red" + " & circle) | green" * 1500
    g = compile(text, GaussianRegistry())
    assert g.route == "lse" and torch.isfinite(g.energy(X)[0]).all()


# -- routes ----------------------------------------------------------------------------------------

def test_dnf_distributes_and_shares_are_equal_by_default():
    g = compile("(red | green) & (circle | square)", GaussianRegistry())
    assert g.route == "dnf" and len(g.disjuncts) == 4
    assert all(d.share == 0.25 for d in g.disjuncts)
    texts = sorted(" & ".join(sorted(d.text.split(" & "))) for d in g.disjuncts)
    assert texts == sorted(["color.red & shape.circle", "color.red & shape.square", "color.green & shape.circle",
                            "color.green & shape.square"])
    for d in g.disjuncts:  # each disjunct is the product of its two chosen branches
        assert sorted(c for c in d.coefs) == [0.0, 0.0, 1.0, 1.0]


def test_dnf_bound_falls_back_to_lse_with_a_notice():
    text = " & ".join(f"(red | {c})" for c in ("green", "blue", "circle", "square", "large"))  # 2⁵ disjuncts
    g = compile(text, GaussianRegistry(), max_disjuncts=16)
    assert g.route == "lse" and any("more than 16 disjuncts" in n for n in g.notices)
    assert "log-sum-exp" in g.explain()
    with pytest.raises(CompileError, match="or_mode='dnf'"):
        compile(text, GaussianRegistry(), max_disjuncts=16, or_mode="dnf")


@pytest.mark.parametrize("text,why", [
    ("circle & ~(red | green)", "not a mixture"),
    ("2 * (red | green)", "not a mixture"),
])
def test_non_mixture_ors_use_lse(text, why):
    g = compile(text, GaussianRegistry())
    assert g.route == "lse" and any(why in n for n in g.notices)


def test_tau_other_than_one_uses_lse():
    g = compile("red | green", GaussianRegistry(), tau=0.5)
    assert g.route == "lse"


def test_implicit_models_need_the_dnf_route():
    reg = GaussianRegistry("implicit")
    assert compile("(red & circle) | ~large", reg).route == "dnf"
    with pytest.raises(CompileError, match="implicit models"):
        compile("circle & ~(red | green)", reg)
    with pytest.raises(CompileError, match="implicit"):
        compile("red | green", reg, or_mode="lse")


# -- checks ----------------------------------------------------------------------------------------

def test_unsatisfiable_warns_and_strict_errors():
    with pytest.warns(UnsatisfiableWarning, match="unsatisfiable"):
        g = compile("red & green", GaussianRegistry())
    assert any("unsatisfiable" in n for n in g.notices)
    with pytest.raises(CompileError, match="unsatisfiable"):
        compile("(red & green) | (circle & square)", GaussianRegistry(), strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile("red | green", GaussianRegistry(), strict=True)
        compile("red & ~green & large", GaussianRegistry(), strict=True)
        compile("position(0.1, 0.1) & position(0.9, 0.9)", GaussianRegistry(), strict=True)


@pytest.mark.parametrize("kind,sampler,ok", [
    ("explicit", "mala", True), ("explicit", "annealed", False), ("explicit", "langevin", True),
    ("noise_conditional", "annealed", True), ("implicit", "mala", False), ("implicit", "annealed", True),
])
def test_sampler_capabilities(kind, sampler, ok):
    reg = GaussianRegistry(kind)
    if ok:
        compile("red & circle", reg, sampler=sampler)
    else:
        with pytest.raises(CompileError, match=sampler):
            compile("red & circle", reg, sampler=sampler)


def test_sampler_names_agree_with_the_sampling_registry():
    from conceptlang.sampling import SAMPLERS

    assert set(SAMPLERS) == set(SAMPLER_NEEDS)


# -- explain ---------------------------------------------------------------------------------------

def test_explain_text_and_dot_describe_every_negation():
    g = compile("(red & ~circle) | ~large", GaussianRegistry(), alpha=0.4)
    text = g.explain()
    assert "~circle: grounded by the positive part of its conjunction, red" in text
    assert "~large: no positive term beside it, so it is grounded by the domain prior" in text
    assert "exact DNF mixture of 2 disjunct(s)" in text
    dot = g.to_dot()
    assert dot.startswith("digraph energy {") and dot.rstrip().endswith("}")
    assert dot.count("grounded by prior") == 1 and dot.count("grounded by positive part") == 1
    j = g.to_json()
    assert j["route"] == "dnf" and len(j["negations"]) == 2 and len(j["leaves"]) == 4


def test_compile_accepts_ast_and_program():
    e = parse_expr("red & ~circle")
    assert torch.equal(compile(e, GaussianRegistry()).energy(X)[0], energy("red & ~circle"))
    with pytest.raises(CompileError, match="expression text or an AST"):
        compile(42, GaussianRegistry())


# -- and_mode "joint" ---------------------------------------------------------------------------------

def test_joint_and_mode_folds_one_models_concepts_into_one_exact_leaf():
    from conceptlang.models.analytic import product_of

    reg = GaussianRegistry()
    g = compile("red & circle & large", reg, and_mode="joint")
    assert [leaf.label for leaf in g.leaves] == ["color.red & shape.circle & size.large"]
    assert g.leaves[0].condition == {"color": "red", "shape": "circle", "size": "large"}
    # The joint Gaussian is the prior-corrected product, so the energy is product mode's up to a constant.
    (mx, my), var = product_of([(1.0, RED), (1.0, CIRCLE), (1.0, LARGE), (-2.0, GAUSS_PRIOR)])
    d = X.view(-1, 2) - torch.tensor([mx, my], dtype=X.dtype)
    torch.testing.assert_close(g.energy(X)[0], d.pow(2).sum(1) / (2 * var), rtol=1e-6, atol=1e-6)
    diff = g.energy(X)[0] - energy("red & circle & large", and_mode="product")
    torch.testing.assert_close(diff, diff[:1].expand(4), rtol=0, atol=1e-5)  # float32 parameters


def test_joint_and_mode_keeps_negations_negative_weights_repeats_and_repeated_families_separate():
    reg = GaussianRegistry()

    def labels(text):
        return sorted(leaf.label for leaf in compile(text, reg, and_mode="joint").leaves)

    assert labels("red & circle & ~large") == ["color.red & shape.circle", "prior", "size.large"]
    assert labels("-1 * red & circle") == ["color.red", "prior", "shape.circle"]
    with pytest.warns(UserWarning, match="unsatisfiable"):  # a concept also negated stays out
        assert labels("red & circle & ~red") == ["color.red", "prior", "shape.circle"]
    assert labels("position(0.2, 0.3) & position(0.7, 0.7) & red & circle") == [
        "color.red & shape.circle", "position(0.2, 0.3)", "position(0.7, 0.7)", "prior"]
    e = energy("red & circle & ~large", and_mode="joint", alpha=0.5)
    from conceptlang.models.analytic import product_of

    (mx, my), var = product_of([(1.0, RED), (1.0, CIRCLE), (-1.0, GAUSS_PRIOR)])
    d = X.view(-1, 2) - torch.tensor([mx, my], dtype=X.dtype)
    ref = d.pow(2).sum(1) / (2 * var) - 0.5 * (leaf_e(LARGE) - leaf_e(GAUSS_PRIOR))
    torch.testing.assert_close(e, ref, rtol=1e-6, atol=1e-6)


def test_joint_and_mode_folds_a_positively_weighted_concept_in_and_adds_its_extra_share():
    """``w * c`` (w > 0) joins the joint condition as c, with (w − 1)·(E_c − E_prior) beside it, as a
    calibrated weight does: the same energy as product mode's up to a constant (the joint Gaussian
    is the prior-corrected product)."""
    reg = GaussianRegistry()
    for text, w in (("2 * red & circle", 2.0), ("0.5 * red & circle", 0.5), ("circle & 3 * (2 * red)", 6.0),
                    ("red & circle & red", 2.0), ("red & circle & 2 * red", 3.0)):
        g = compile(text, reg, and_mode="joint")
        assert sorted(leaf.label for leaf in g.leaves) == ["color.red", "color.red & shape.circle", "prior"]
        red, joint, prior = (next(i for i, leaf in enumerate(g.leaves) if leaf.label == name)
                             for name in ("color.red", "color.red & shape.circle", "prior"))
        coefs = g.linear_coefs
        assert (coefs[joint], coefs[red], coefs[prior]) == (1.0, w - 1.0, -(w - 1.0))
        diff = g.energy(X)[0] - energy(text, and_mode="product")
        torch.testing.assert_close(diff, diff[:1].expand(4), rtol=0, atol=1e-5)


def test_joint_and_mode_identities_and_fallbacks():
    def e(t, reg=None):
        return energy(t, reg, and_mode="joint")

    assert torch.equal(e("red & circle & large"), e("large & (circle & red)"))
    assert torch.equal(e("2 * red & circle"), e("red & circle & red"))
    assert torch.equal(e("(red & circle) | large"), e("large | (circle & red)"))
    # Per-family models (no joint model) and registries without the hook: exactly product mode.
    split = GaussianRegistry(joint=False)
    assert torch.equal(e("red & circle", split), energy("red & circle", split, and_mode="product"))
    assert [leaf.label for leaf in compile("red & circle", split, and_mode="joint").leaves] != ["color.red & shape.circle"]


def test_joint_and_mode_is_explained_and_validated():
    g = compile("circle & red", GaussianRegistry(), and_mode="joint")
    text = g.explain()
    assert "concepts of one joint model as one condition (and_mode=joint)" in text
    assert "color.red & shape.circle" in text
    with pytest.raises(CompileError, match="and_mode must be one of sum, product, joint"):
        compile("red", GaussianRegistry(), and_mode="together")


# -- calibrated concept weights (the registry's optional concept_weight hook) --------------------

class CalibratedRegistry(GaussianRegistry):
    def __init__(self, weights, **kw):
        super().__init__(**kw)
        self.weights = weights

    def concept_weight(self, ref):
        return self.weights.get(ref.value if ref.params is None else ref.family, 1.0)


def test_a_calibrated_concept_is_sharpened_against_the_prior_wherever_it_appears():
    reg, plain = CalibratedRegistry({"red": 2.0}), GaussianRegistry()
    er, ep, ec = leaf_e(RED), leaf_e(GAUSS_PRIOR), leaf_e(CIRCLE)
    opts = dict(and_mode="product", alpha=0.5)
    torch.testing.assert_close(energy("red", reg, **opts), ep + 2 * (er - ep), rtol=1e-6, atol=1e-6)
    # the same graph as writing the weight out, bit for bit (hash-consing)
    assert torch.equal(energy("red", reg, **opts), energy("2 * red", plain, **opts))
    assert torch.equal(energy("circle & 3 * red", reg, **opts), energy("circle & 6 * red", plain, **opts))
    # a negated calibrated concept: −α·w
    torch.testing.assert_close(energy("circle & ~red", reg, **opts), ep + (ec - ep) - 0.5 * 2 * (er - ep),
                               rtol=1e-6, atol=1e-6)
    # sum mode scales the energy itself
    torch.testing.assert_close(energy("red", reg, and_mode="sum"), 2 * er, rtol=1e-6, atol=1e-6)
    # switched off, and unweighted concepts: as written
    assert torch.equal(energy("red & circle", reg, concept_weights=False, **opts), energy("red & circle", plain, **opts))
    assert torch.equal(energy("circle", reg, **opts), energy("circle", plain, **opts))


def test_a_calibrated_concept_stays_in_the_joint_leaf_and_adds_its_extra_share():
    reg, plain = CalibratedRegistry({"red": 3.0}), GaussianRegistry()
    g = compile("red & circle", reg, and_mode="joint")
    assert sorted(leaf.label for leaf in g.leaves) == ["color.red", "color.red & shape.circle", "prior"]
    extra = 2.0 * (leaf_e(RED) - leaf_e(GAUSS_PRIOR))
    torch.testing.assert_close(g.energy(X)[0], energy("red & circle", plain, and_mode="joint") + extra,
                               rtol=1e-6, atol=1e-6)
    # a weight written by the user multiplies the calibrated one; the concept stays in the joint leaf
    # with its extra share (2·3 − 1)·(E_red − E_prior)
    assert sorted(leaf.label for leaf in compile("2 * red & circle", reg, and_mode="joint").leaves) == [
        "color.red", "color.red & shape.circle", "prior"]
    torch.testing.assert_close(energy("2 * red & circle", reg, and_mode="joint"),
                               energy("red & circle", plain, and_mode="joint") + 2.5 * extra, rtol=1e-6, atol=1e-6)
    assert torch.equal(energy("2 * red & circle", reg, and_mode="joint"),
                       energy("6 * red & circle", plain, and_mode="joint"))
    # inside an OR: each disjunct carries the calibrated coefficient (leaves: red, prior, circle)
    g = compile("red | circle", reg, and_mode="joint")
    assert [leaf.label for leaf in g.leaves] == ["color.red", "prior", "shape.circle"]
    assert g.route == "dnf" and sorted((d.text, d.coefs) for d in g.disjuncts) == [
        ("red", (3.0, -2.0, 0.0)), ("shape.circle", (0.0, 0.0, 1.0))]


def test_calibrated_weights_are_announced_in_the_notices():
    g = compile("red & ~circle", CalibratedRegistry({"red": 2.0, "circle": 1.5}), and_mode="product")
    note = [n for n in g.notices if n.startswith("calibrated concept weights")]
    assert note == ["calibrated concept weights (from the models' manifest): circle ×1.5, red ×2; "
                    "concept_weights=False (CLI --no-concept-weights) scores concepts as written"]
    assert note[0] in g.explain()
    assert not [n for n in compile("red", CalibratedRegistry({"red": 2.0}), concept_weights=False).notices
                if n.startswith("calibrated")]
