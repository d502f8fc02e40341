"""free_families="data" on an object-level composition: each object draws its own free values.

``position(a) & position(b)`` on a joint model trained on two objects per image lowers to one
joint leaf per object, conditioned on its position and on the model's discrete families drawn
per chain (``Drawn(values=..., objects=2)``); the sampler draws each object's values together
with the registry's ``value_draws`` of a tuple of families. Checked exactly on the analytic
Gaussian registry (each chain's score is that of its own drawn conditions), and on the shipped
scenes generator's two-object draws.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from conceptlang.compiler import compile as compile_expr
from conceptlang.compiler.compile import UnsatisfiableWarning
from conceptlang.data import scenes
from conceptlang.errors import CompileError, ModelError, SamplingError
from conceptlang.interface import ConceptRef, Drawn
from conceptlang.models.analytic import GaussianRegistry, gaussian_for
from conceptlang.models.conditions import SlotSpec, encode_conditions
from conceptlang.models.registry import load_registry
from conceptlang.sampling import sample
from conceptlang.sampling.api import draw_chain_values

TWO = "position(0.2, 0.3) & position(0.8, 0.7)"
FAMS = ("color", "shape", "size")  # the gauss domain's discrete families, in its order
# chain k's draw for an object: (color, shape, size) value indices, cycling
DRAWS = ((0, 1, 0), (2, 0, 1), (1, 1, 1))


class _ObjectsRegistry(GaussianRegistry):
    """The analytic joint registry, trained (it says) on two objects per image, drawing each
    object's discrete values from DRAWS (offset by the seed's parity, so two objects differ)."""

    def __init__(self, *args, objects: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.objects = objects
        self.asked: list[tuple] = []

    def max_objects(self, ref):
        return self.objects

    def value_draws(self, domain, family, given, n, seed, objects=1, **where):
        if isinstance(family, str) or "near" in where:  # no whole layouts
            return None
        self.asked.append((family, dict(given), objects))
        return np.array([DRAWS[(k + seed % 2) % 3] for k in range(n)], dtype=np.float64)


@pytest.mark.filterwarnings("ignore::conceptlang.compiler.select.ModelSetWarning")  # the cases beyond max_objects
def test_two_positions_lower_to_one_leaf_per_object_with_drawn_values():
    reg = _ObjectsRegistry("implicit")
    g = compile_expr(TWO, reg, free_families="data", and_mode="joint")
    assert g.route == "linear" and g.linear_coefs == (1.0, 1.0, -1.0)
    assert [leaf.label for leaf in g.leaves] == [
        "position(0.2, 0.3) & color(drawn) & shape(drawn) & size(drawn)",
        "position(0.8, 0.7) & color(drawn) & shape(drawn) & size(drawn)", "prior"]
    assert g.drawn_leaves == {0: FAMS, 1: FAMS} and g.drawer == reg.value_draws
    assert g.leaves[0].condition == {"position": (0.2, 0.3), "color": Drawn(values=("red", "green", "blue"), objects=2),
                                     "shape": Drawn(values=("circle", "square"), objects=2),
                                     "size": Drawn(values=("small", "large"), objects=2)}
    assert any("color, shape, size of each object drawn per chain as an object of the data's 2-object images" in n
               for n in g.notices)
    assert "color: <drawn>" in g.explain()
    # the families stay the model's: other options, a conjunction naming other families, one
    # object, a model trained on fewer objects, a registry that cannot draw them, weights
    for text, reg2, opts in ((TWO, reg, {"free_families": "model"}),
                             (TWO, reg, {"free_families": "discrete"}),
                             (TWO, reg, {"and_mode": "product"}),
                             (TWO + " & red", reg, {}),
                             ("position(0.2, 0.3) & position(0.2, 0.3)", reg, {}),
                             ("position(0.2, 0.3) & position(0.8, 0.7) & position(0.5, 0.5)", reg, {}),
                             (TWO, _ObjectsRegistry("implicit", objects=1), {}),
                             (TWO, GaussianRegistry("implicit"), {}),
                             ("2 * position(0.2, 0.3) & position(0.8, 0.7)", reg, {})):
        g = compile_expr(text, reg2, **{"free_families": "data", "and_mode": "joint", **opts})
        assert all(not isinstance(v, Drawn) or v.values is None for leaf in g.leaves for v in leaf.condition.values()), text


class _SpreadRegistry(_ObjectsRegistry):
    """_ObjectsRegistry that also draws positions: each chain's object centre offset from its
    named point by OFFSETS[k % 2] (recording what it was asked)."""

    OFFSETS = ((0.01, -0.02), (-0.03, 0.0))

    def value_draws(self, domain, family, given, n, seed, objects=1, **where):
        if family != "position":
            return super().value_draws(domain, family, given, n, seed, objects=objects, **where)
        self.asked.append((family, dict(given), objects, tuple(where.items())))
        near = np.asarray(where.get("near", (0.5, 0.5)))
        return np.array([near + self.OFFSETS[k % 2] for k in range(n)], dtype=np.float64)


def test_named_positions_data_draws_each_objects_centre_near_its_point():
    reg = _SpreadRegistry("implicit")
    g = compile_expr(TWO, reg, free_families="data", and_mode="joint", named_positions="data", named_radius=0.05)
    assert [leaf.label for leaf in g.leaves] == [
        "position(drawn near 0.2, 0.3) & color(drawn) & shape(drawn) & size(drawn)",
        "position(drawn near 0.8, 0.7) & color(drawn) & shape(drawn) & size(drawn)", "prior"]
    assert g.drawn_leaves == {0: ("position", *FAMS), 1: ("position", *FAMS)} and g.linear_coefs == (1.0, 1.0, -1.0)
    assert any("each object's position drawn per chain where it holds (within 0.05 of its point; "
               "named_positions=data), on its own: the registry draws no layout" in n for n in g.notices)
    reg.asked.clear()
    values = draw_chain_values(g, 4, seed=0)
    # each centre drawn alone near its own point within the radius; the values given nothing
    assert [a for a in reg.asked if a[0] == "position"] == [
        ("position", {}, 1, (("near", (0.2, 0.3)), ("radius", 0.05))),
        ("position", {}, 1, (("near", (0.8, 0.7)), ("radius", 0.05)))]
    assert [a for a in reg.asked if a[0] != "position"] == [(FAMS, {}, 2), (FAMS, {}, 2)]
    want = torch.tensor([[0.21, 0.28], [0.17, 0.3], [0.21, 0.28], [0.17, 0.3]])
    assert torch.allclose(values[(0, "position")], want, atol=1e-6)
    # each chain scores its own drawn centre: the same as that centre written out
    n = 4
    x = torch.randn(n, 2, 1, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigma = torch.full((n,), 0.5, dtype=torch.float64)
    coefs = torch.tensor([g.linear_coefs] * n, dtype=torch.float64)
    got = g.linear_score(x, coefs, sigma, g.chain_conditions(values, x.device))
    names = {"color": ("red", "green", "blue"), "shape": ("circle", "square"), "size": ("small", "large")}
    for k in range(n):
        want_k = torch.zeros(2, dtype=torch.float64)
        for leaf in (0, 1):
            cond = {"position": tuple(float(v) for v in values[(leaf, "position")][k]),
                    **{f: names[f][int(values[(leaf, f)][k, 0])] for f in FAMS}}
            q = gaussian_for(cond)
            want_k += -(x[k].view(2) - torch.tensor(q.mean, dtype=torch.float64)) / (q.scale ** 2 + 0.25)
        q = gaussian_for({})
        want_k -= -(x[k].view(2) - torch.tensor(q.mean, dtype=torch.float64)) / (q.scale ** 2 + 0.25)
        assert torch.allclose(got[k].view(2), want_k, rtol=0, atol=1e-5), k
    # the exact points by default, and where the registry cannot draw positions
    for reg2, opts in ((reg, {}), (_ObjectsRegistry("implicit"), {"named_positions": "data"})):
        g = compile_expr(TWO, reg2, free_families="data", and_mode="joint", **opts)
        assert g.leaves[0].condition["position"] == (0.2, 0.3) and g.drawn_leaves == {0: FAMS, 1: FAMS}


class _LayoutRegistry(_SpreadRegistry):
    """_SpreadRegistry that also draws whole layouts: row r puts object i at its point + OFFSETS[r % 2]
    with the values DRAWS[(r + i) % 3], so a chain's two objects always come from one row."""

    def value_draws(self, domain, family, given, n, seed, objects=1, **where):
        if isinstance(family, str) or "near" not in where:
            return super().value_draws(domain, family, given, n, seed, objects=objects, **where)
        self.asked.append((family, dict(given), objects, tuple(where.items())))
        near = np.asarray(where["near"]).reshape(objects, 2)
        return np.array([np.concatenate([np.concatenate([near[i] + self.OFFSETS[r % 2], DRAWS[(r + i) % 3]])
                                         for i in range(objects)]) for r in range(n)], dtype=np.float64)


@pytest.mark.parametrize("draws", ["independent", "spread"])
def test_a_registry_that_draws_layouts_draws_both_objects_together(draws):
    reg = _LayoutRegistry("implicit")
    g = compile_expr(TWO, reg, free_families="data", and_mode="joint", named_positions="data", named_radius=0.05)
    layout = (0.2, 0.3, 0.8, 0.7)
    for slot in (0, 1):
        assert {f: (v.layout, v.slot, v.within) for f, v in g.leaves[slot].condition.items()} == \
            {f: (layout, slot, 0.05) for f in ("position", *FAMS)}
    assert g.leaves[0].condition["position"].near == (0.2, 0.3) and g.linear_coefs == (1.0, 1.0, -1.0)
    assert any("the objects' position and color, shape, size drawn per chain together, as the data's 2-object "
               "images with an object within 0.05 of each point have them (free_families" in n for n in g.notices)
    assert not any("on its own" in n for n in g.notices)
    reg.asked.clear()
    n = 8
    values = draw_chain_values(g, n, seed=0, draws=draws)
    assert len(reg.asked) == 1  # one call for both objects
    fam, given, objects, where = reg.asked[0]
    assert (fam, given, objects, where) == (("position", *FAMS), {}, 2, (("near", layout), ("radius", 0.05)))
    rows = set()
    for k in range(n):
        off = tuple(np.round(values[(0, "position")][k].numpy() - np.array([0.2, 0.3]), 6))
        r = [i for i, o in enumerate(_LayoutRegistry.OFFSETS) if np.allclose(off, o, atol=1e-6)]
        assert len(r) == 1, off  # object 0 at its point plus a row's offset
        assert np.allclose(values[(1, "position")][k].numpy(), np.array([0.8, 0.7]) + _LayoutRegistry.OFFSETS[r[0]],
                           atol=1e-6)  # object 1 from the same row
        first = tuple(int(values[(0, f)][k, 0]) for f in FAMS)
        second = tuple(int(values[(1, f)][k, 0]) for f in FAMS)
        assert second == DRAWS[(DRAWS.index(first) + 1) % 3]  # the same row's next object
        rows.add((r[0], first))
    assert len(rows) == 6  # the first 8 rows (the registry's two offsets give too few distinct places to spread)


def test_each_chain_scores_its_own_drawn_objects_exactly():
    reg = _ObjectsRegistry("implicit")
    g = compile_expr(TWO, reg, free_families="data", and_mode="joint")
    reg.asked.clear()  # (the compiler asked once whether the registry can draw them at all)
    n = 6
    values = draw_chain_values(g, n, seed=0)
    assert set(values) == {(leaf, f) for leaf in (0, 1) for f in FAMS}
    # drawn together, given the leaf's named value, for two-object images
    assert reg.asked == [(FAMS, {"position": (0.2, 0.3)}, 2), (FAMS, {"position": (0.8, 0.7)}, 2)]
    x = torch.randn(n, 2, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigma = torch.full((n,), 0.3, dtype=torch.float64)
    coefs = torch.tensor([g.linear_coefs] * n, dtype=torch.float64)
    got = g.linear_score(x, coefs, sigma, g.chain_conditions(values, x.device))

    def score(cond, k):
        q = gaussian_for(cond)
        return -(x[k].view(2) - torch.tensor(q.mean, dtype=torch.float64)) / (q.scale ** 2 + 0.09)

    names = {"color": ("red", "green", "blue"), "shape": ("circle", "square"), "size": ("small", "large")}
    seen = set()
    for k in range(n):
        want = -score({}, k)
        for leaf, place in ((0, (0.2, 0.3)), (1, (0.8, 0.7))):
            drawn = {f: names[f][int(values[(leaf, f)][k, 0])] for f in FAMS}
            want = want + score({"position": place, **drawn}, k)
            seen.add((leaf, tuple(drawn.values())))
        assert torch.allclose(got[k].view(2), want, rtol=0, atol=1e-5), k
    assert len(seen) == 6  # both objects, every draw of DRAWS: the draws reached the conditions


def test_chains_land_on_the_gaussian_of_their_own_objects():
    reg = _ObjectsRegistry("implicit")
    g = compile_expr(TWO, reg, free_families="data", and_mode="joint")
    n = 300
    res = sample(g, n, seed=3, sampler="dpmpp_2m", steps=40, sigma_max=20.0, batch_size=64, device="cpu")
    assert res.settings["drawn"] == ["color", "shape", "size"]
    values = draw_chain_values(g, n, seed=3)
    pts = res.images.view(n, 2).double()
    names = {"color": ("red", "green", "blue"), "shape": ("circle", "square"), "size": ("small", "large")}
    groups: dict[tuple, list[int]] = {}
    for k in range(n):
        key = tuple(int(values[(leaf, f)][k, 0]) for leaf in (0, 1) for f in FAMS)
        groups.setdefault(key, []).append(k)
    assert len(groups) == 3
    for key, rows in groups.items():
        conds = [{"position": p, **{f: names[f][key[3 * j + i]] for i, f in enumerate(FAMS)}}
                 for j, p in enumerate(((0.2, 0.3), (0.8, 0.7)))]
        # the product of the two objects' Gaussians over the prior: its mean (composing scores at
        # every noise level lands on the product's mean; its spread is the sampler's, not checked)
        parts = [gaussian_for(c) for c in conds] + [gaussian_for({})]
        prec = [1 / p.scale ** 2 for p in parts]
        prec[2] = -prec[2]
        total = sum(prec)
        mean = sum(w * torch.tensor(p.mean, dtype=torch.float64) for w, p in zip(prec, parts)) / total
        got = pts[rows]
        tol = 4 * (1 / total) ** 0.5 / len(rows) ** 0.5 + 0.01
        assert torch.allclose(got.mean(0), mean, atol=tol), (key, got.mean(0), mean)


def test_draws_that_are_not_value_indices_are_a_sampling_error():
    class Broken(_ObjectsRegistry):
        def value_draws(self, domain, family, given, n, seed, objects=1, **where):
            if isinstance(family, str):
                return None
            return np.full((n, 3), 5.0) if n > 1 else np.zeros((n, 3))

    g = compile_expr(TWO, Broken("implicit"), free_families="data", and_mode="joint")
    with pytest.raises(SamplingError, match="draws of 'color' are not indices of its 3 values"):
        sample(g, 4, sampler="dpmpp_2m", steps=4, device="cpu")


def test_a_drawn_discrete_slot_is_null_until_filled_and_must_name_its_values():
    slots = (SlotSpec("shape", "discrete", values=("circle", "square")),
             SlotSpec("position", "continuous", params=("x", "y"), ranges=((0.0, 1.0), (0.0, 1.0))))
    drawn = encode_conditions(slots, [{"shape": Drawn(values=("circle", "square")), "position": (0.5, 0.5)}])
    plain = encode_conditions(slots, [{"position": (0.5, 0.5)}])
    assert torch.equal(drawn, plain)
    with pytest.raises(ModelError, match="'shape' is discrete: a per-chain draw of it must name its values"):
        encode_conditions(slots, [{"shape": Drawn()}])
    with pytest.raises(ModelError, match="'position' is continuous: a per-chain draw of it must be parameters"):
        encode_conditions(slots, [{"position": Drawn(values=("a",))}])
    assert repr(Drawn(values=("a", "b"), objects=2)) == "DRAWN(a|b, objects=2)"
    assert ConceptRef("scenes", "shape", drawn=True).qualified == "shape(drawn)"


@pytest.fixture(scope="module")
def scenes_registry():
    return load_registry()


def test_scenes_object_draws_follow_the_two_object_split(scenes_registry):
    reg = scenes_registry
    fams = ("shape", "color", "size")
    a = reg.value_draws("scenes", fams, {}, 8000, 4, objects=2)
    assert a.shape == (8000, 3) and np.array_equal(a, reg.value_draws("scenes", fams, {}, 8000, 4, objects=2))
    assert not np.array_equal(a, reg.value_draws("scenes", fams, {}, 8000, 5, objects=2))
    # both objects small; every allowed small combination, none held out, about equally often
    small = scenes.SIZES.index("small")
    held = {(scenes.SHAPES.index(s), scenes.COLORS.index(c), scenes.SIZES.index(z))
            for s, c, z in scenes.HELDOUT_COMBINATIONS}
    allowed = {t for t in itertools.product(range(3), range(len(scenes.COLORS)), [small]) if t not in held}
    combos, counts = np.unique(a.astype(int), axis=0, return_counts=True)
    assert {tuple(c) for c in combos} == allowed and len(allowed) == 16
    assert counts.min() > 8000 / 16 * 0.8 and counts.max() < 8000 / 16 * 1.2
    # one object per image: the whole one-object distribution, both sizes
    one = reg.value_draws("scenes", fams, {}, 4000, 4)
    assert set(np.unique(one[:, 2]).astype(int)) == {0, 1} and len(np.unique(one, axis=0)) == 36
    assert reg.value_draws("scenes", fams, {}, 4, 0, objects=3) is None  # no three-object images
    assert reg.value_draws("scenes", ("shape", "position"), {}, 4, 0, objects=2) is None
    assert reg.value_draws("faces", ("hair",), {}, 4, 0, objects=2) is None
    assert reg.value_draws("scenes", "position", {}, 4, 0, objects=2) is None


def test_scenes_layout_draws_put_each_object_near_its_point_as_the_two_object_split_does(scenes_registry):
    reg = scenes_registry
    fams = ("position", "shape", "color", "size")
    near = (0.35, 0.5, 0.65, 0.5)  # 0.3 apart: the objects' boxes must keep 2/32 apart
    a = reg.value_draws("scenes", fams, {}, 3000, 4, near=near, radius=0.05, objects=2)
    assert a.shape == (3000, 10)
    assert np.array_equal(a, reg.value_draws("scenes", fams, {}, 3000, 4, near=near, radius=0.05, objects=2))
    obj = a.reshape(3000, 2, 5)
    for i, point in enumerate(((0.35, 0.5), (0.65, 0.5))):
        assert np.linalg.norm(obj[:, i, :2] - point, axis=1).max() <= 0.05 + 1e-6
    idx = obj[:, :, 2:].astype(int)
    half = scenes.half_extent(idx[..., 0], scenes.EXTENT_ARRAY[idx[..., 2]])
    assert not scenes._overlaps(obj[:, :, :2], half).any()
    assert (idx[..., 2] == scenes.SIZES.index("small")).all()
    # close places favour the narrower shapes: two triangles (the widest) fit only 0.39 apart or
    # more, two squares (the narrowest) from 0.32; the split itself draws each pair 1/9 of the time
    tri, sq = scenes.SHAPES.index("triangle"), scenes.SHAPES.index("square")
    assert ((idx[:, 0, 0] == tri) & (idx[:, 1, 0] == tri)).mean() < 0.01
    assert ((idx[:, 0, 0] == sq) & (idx[:, 1, 0] == sq)).mean() > 0.18
    # no layout has two objects 0.2 apart within 0.05 of each point, and only two-object images
    assert reg.value_draws("scenes", fams, {}, 4, 0, near=(0.4, 0.5, 0.6, 0.5), radius=0.05, objects=2) is None
    assert reg.value_draws("scenes", fams, {}, 4, 0, near=near + (0.5, 0.2), radius=0.05, objects=3) is None
    assert reg.value_draws("faces", ("hair",), {}, 4, 0, near=near, radius=0.05, objects=2) is None


def test_the_object_level_set_spreads_whole_layouts_over_the_chains():
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    g = compile_expr("position(0.35, 0.5) & position(0.65, 0.5)", reg)
    values = draw_chain_values(g, 300, seed=1)
    pos = np.stack([values[(leaf, "position")].numpy() for leaf in (0, 1)], 1)  # (300, 2, 2)
    idx = np.stack([np.concatenate([values[(leaf, f)].numpy() for f in ("shape", "size")], 1) for leaf in (0, 1)],
                   1).astype(int)
    half = scenes.half_extent(idx[..., 0], scenes.EXTENT_ARRAY[idx[..., 1]])
    assert not scenes._overlaps(pos, half).any()  # each chain's objects come from one layout of the data
    assert np.abs(pos[:, 0, 0] - pos[:, 1, 0]).min() > 0.3
    assert len(np.unique(pos.reshape(300, 4), axis=0)) == 300
    assert g.leaves[0].condition["position"].within == 0.05
    # 0.2 apart, no layout of the data has an object within 0.05 of each point, some within 0.1
    # (where the places hold): drawn there, with a notice
    g = compile_expr("position(0.4, 0.5) & position(0.6, 0.5)", reg)
    assert g.leaves[1].condition["shape"].within == 0.1 and g.leaves[1].condition["shape"].slot == 1
    assert any("within 0.1 of each point have them (none has one within 0.05: wider, where the place holds)" in n
               for n in g.notices)
    values = draw_chain_values(g, 100, seed=1)
    for leaf, point in ((0, (0.4, 0.5)), (1, (0.6, 0.5))):
        assert np.linalg.norm(values[(leaf, "position")].numpy() - point, axis=1).max() <= 0.1 + 1e-6
    assert (values[(0, "position")][:, 0] - values[(1, "position")][:, 0]).abs().min() > 0.3
    # too close for two objects of the data even there: each drawn on its own, with a notice
    g = compile_expr("position(0.45, 0.5) & position(0.55, 0.5)", reg)
    assert g.leaves[0].condition["shape"].layout == () and g.drawn_leaves[0] == ("position", "shape", "color", "size")
    assert any("on its own: the registry draws no layout of the data's 2-object images with an object within 0.1 "
               "of each point" in n for n in g.notices)


def test_values_beside_the_places_are_drawn_into_the_layout():
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    g = compile_expr("position(0.3, 0.3) & position(0.7, 0.6) & triangle & red", reg)
    # the values join the objects' draws, and stay product terms
    assert [leaf.label for leaf in g.leaves][2:] == ["shape.triangle", "color.red", "prior"]
    assert g.linear_coefs == (1.0, 1.0, 1.0, 1.0, -3.0)
    assert g.leaves[0].condition["color"].some == (("shape", "triangle"), ("color", "red"))
    assert any("within 0.05 of each point, triangle and red held by some object have them" in n for n in g.notices)
    values = draw_chain_values(g, 200, seed=4)
    shapes = np.concatenate([values[(leaf, "shape")].numpy() for leaf in (0, 1)], 1)
    colours = np.concatenate([values[(leaf, "color")].numpy() for leaf in (0, 1)], 1)
    assert (shapes == scenes.SHAPES.index("triangle")).any(1).all() and (colours == scenes.COLORS.index("red")).any(1).all()
    assert len(np.unique(shapes, axis=0)) > 3  # the other object's shape still varies
    # two objects may hold two colours: no single-object unsatisfiability warning, even strict
    g = compile_expr("position(0.3, 0.3) & position(0.7, 0.6) & red & blue", reg, strict=True)
    assert "satisfiability not checked: the expression places 2 objects, and the check reads every concept " \
        "as one object's" in g.notices and not any("unsatisfiable" in n for n in g.notices)
    colours = np.concatenate([draw_chain_values(g, 50, seed=0)[(leaf, "color")].numpy() for leaf in (0, 1)], 1)
    assert (np.sort(colours, 1) == [scenes.COLORS.index("red"), scenes.COLORS.index("blue")]).all()
    with pytest.raises(CompileError, match="unsatisfiable: no single object"):
        compile_expr("position(0.3, 0.3) & red & blue", reg, strict=True)
    # a written weight on a value: drawn into the layout the same way, its product term weighted
    g = compile_expr("position(0.3, 0.3) & position(0.7, 0.6) & 2 * red & 0.5 * triangle", reg)
    assert [leaf.label for leaf in g.leaves][2:] == ["color.red", "shape.triangle", "prior"]
    assert g.linear_coefs == (1.0, 1.0, 2.0, 0.5, -3.5)
    assert g.leaves[1].condition["shape"].some == (("color", "red"), ("shape", "triangle"))
    # a negative weight on a value is its negation (the set's complement mode), with a notice
    g = compile_expr("position(0.3, 0.3) & position(0.7, 0.6) & -2 * red", reg)
    assert g.leaves[0].condition["color"].none == (("color", "red"),) and len(g.leaves) == 3
    assert any(n.startswith("-2 * red: a weighted negation is lowered as the negation") for n in g.notices)
    # a value no two-object image has (large, or ~small: with a warning), a negative weight in the
    # ratio form: a plain product, as before
    for text, opts, warned in (("position(0.3, 0.3) & position(0.7, 0.6) & large", {}, "large held by some object"),
                               ("position(0.3, 0.3) & position(0.7, 0.6) & ~small", {}, "small by none"),
                               ("position(0.3, 0.3) & position(0.7, 0.6) & -1 * red", {"negation": "ratio"}, None)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g = compile_expr(text, reg, **opts)
        said = [str(w.message) for w in caught if issubclass(w.category, UnsatisfiableWarning)]
        if warned is None:
            assert said == []
        else:
            assert said == [f"{text}: the data's 2-object images have no layout with an object near each place and "
                            f"{warned}, so it is a plain product, and its samples are unlikely to show it"]
            assert "warning: " + said[0] in g.notices
            with pytest.raises(CompileError, match="no layout with an object near each place"):
                compile_expr(text, reg, strict=True, **opts)
        assert not any(isinstance(v, Drawn) and v.values is not None for leaf in g.leaves
                       for v in leaf.condition.values()), text


def test_negated_values_beside_the_places_are_kept_off_every_object_of_the_layout():
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    # 0.2 apart: as a plain product the objects merge into one; drawn as whole layouts they do not
    g = compile_expr("~yellow & position(0.7, 0.7) & position(0.7, 0.5) & triangle & ~circle", reg)
    cond = g.leaves[0].condition["color"]
    assert cond.some == (("shape", "triangle"),) and cond.none == (("color", "yellow"), ("shape", "circle"))
    assert cond.within == 0.1 and g.leaves[1].condition["shape"].none == cond.none
    assert any("within 0.1 of each point, triangle held by some object, yellow and circle by none have them" in n
               for n in g.notices)
    values = draw_chain_values(g, 200, seed=2)
    shapes = np.concatenate([values[(leaf, "shape")].numpy() for leaf in (0, 1)], 1)
    colours = np.concatenate([values[(leaf, "color")].numpy() for leaf in (0, 1)], 1)
    assert not (colours == scenes.COLORS.index("yellow")).any() and not (shapes == scenes.SHAPES.index("circle")).any()
    assert (shapes == scenes.SHAPES.index("triangle")).any(1).all()
    assert len(np.unique(colours, axis=0)) > 10  # the other colours still vary, in both objects
    for leaf, point in ((0, (0.7, 0.7)), (1, (0.7, 0.5))):
        assert np.linalg.norm(values[(leaf, "position")].numpy() - point, axis=1).max() <= 0.1 + 1e-6
    # a negation no layout can meet (every object of a two-object image is small): a plain product
    with pytest.warns(UnsatisfiableWarning, match="no layout"):
        g = compile_expr("position(0.3, 0.3) & position(0.7, 0.6) & ~small", reg)
    assert not any(isinstance(v, Drawn) and v.layout for leaf in g.leaves for v in leaf.condition.values())


def test_an_or_with_a_two_object_branch_draws_each_layout_with_the_values_beside_its_places():
    """The OR falls back to equal shares (a branch places two objects); the conjunction is then
    distributed over its ORs as written, so the two-object disjuncts hold their other terms."""
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    g = compile_expr("~yellow & (small & cyan | position(0.7, 0.7) & position(0.7, 0.5)) & (triangle | 2 * circle)", reg)
    assert sorted(round(d.share, 12) for d in g.disjuncts) == [0.25] * 4
    laid = {tuple(sorted(c.some)): c.none for leaf in g.leaves for c in leaf.condition.values()
            if isinstance(c, Drawn) and c.layout}
    assert laid == {(("shape", "triangle"),): (("color", "yellow"),), (("shape", "circle"),): (("color", "yellow"),)}
    coefs = {tuple(sorted(leaf.label for leaf, c in zip(g.leaves, d.coefs) if c)): tuple(c for c in d.coefs if c)
             for d in g.disjuncts}
    circles = next(v for k, v in coefs.items() if "shape.circle" in k and any("drawn near" in x for x in k))
    assert sorted(circles) == [-3.0, 1.0, 1.0, 2.0]  # both objects, 2 * circle, and the prior
    values = draw_chain_values(g, 64, seed=1)
    for leaf in {i for i, x in enumerate(g.leaves) if any(isinstance(c, Drawn) and c.layout for c in x.condition.values())}:
        assert not (values[(leaf, "color")] == scenes.COLORS.index("yellow")).any()


def _energy_terms(g):
    """{leaf label: coefficient} of a product graph (the leaves with a non-zero coefficient)."""
    return {leaf.label: c for leaf, c in zip(g.leaves, g.linear_coefs) if c}


def test_a_weighted_or_with_a_two_object_branch_gives_each_branch_its_weight():
    """``w * (a | b)`` beside a place, ``b`` a second place: distributed like the unweighted OR,
    each disjunct carrying the weight on what its branch pins (a negation's magnitude aside)."""
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    g = compile_expr("position(0.5, 0.6) & 0.5 * (~circle | position(0.3, 0.6))", reg)
    placed = [d for d in g.disjuncts if any(c and "near 0.3, 0.6" in leaf.label for leaf, c in zip(g.leaves, d.coefs))]
    assert len(placed) == 1 and round(placed[0].share, 12) == 0.5
    terms = {leaf.label: c for leaf, c in zip(g.leaves, placed[0].coefs) if c}
    objects = " & shape(drawn) & color(drawn) & size(drawn)"
    assert terms == {"position(drawn near 0.5, 0.6)" + objects: 1.0, "position(drawn near 0.3, 0.6)" + objects: 1.0,
                     "position(drawn near 0.3, 0.6)": -0.5, "prior": -0.5}
    others = [d for d in g.disjuncts if d is not placed[0]]
    assert round(sum(d.share for d in others), 12) == 0.5
    shapes = {v for d in others for leaf, c in zip(g.leaves, d.coefs) if c
              for f, v in leaf.condition.items() if f == "shape"}
    assert shapes == {"square", "triangle"}


def _assert_lowered_alike(pairs, reg):
    """Each (grouped, flat) pair lowers to the same energy terms, both objects drawn as one layout."""
    for grouped, flat in pairs:
        got, want = compile_expr(grouped, reg), compile_expr(flat, reg)
        assert _energy_terms(got) == _energy_terms(want)
        assert sum(1 for leaf in got.leaves if any(isinstance(v, Drawn) and v.layout for v in leaf.condition.values())) == 2


def test_a_weighted_conjunction_beside_two_places_keeps_its_weight_on_its_values():
    """``2 * (position(b) & circle)`` spliced into an object-level composition scores as ``2 *
    circle`` there (its place takes no extra share), and ``2 * (red & circle)`` as ``2 * red & 2 *
    circle``: the weight was dropped before."""
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    pairs = [("position(0.3, 0.3) & 2 * (position(0.7, 0.7) & circle)", "position(0.3, 0.3) & position(0.7, 0.7) & 2 * circle"),
             ("position(0.3, 0.3) & position(0.7, 0.7) & 2 * (red & circle)",
              "position(0.3, 0.3) & position(0.7, 0.7) & 2 * red & 2 * circle")]
    _assert_lowered_alike(pairs, reg)
    assert sorted(_energy_terms(compile_expr(pairs[1][0], reg)).values()) == [-5.0, 1.0, 1.0, 2.0, 2.0]


def test_a_weighted_conjunction_of_two_places_is_spliced_like_one_of_one_place():
    """``2 * (position(a) & position(b) …)``: the group's places take no extra share (as a weighted
    group's one place does), its values theirs; the objects drawn as one layout, as without the weight
    (it was a plain product of the two places before)."""
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    pairs = [("2 * (position(0.3, 0.3) & position(0.7, 0.7))", "position(0.3, 0.3) & position(0.7, 0.7)"),
             ("red & 2 * (position(0.3, 0.3) & position(0.7, 0.7))", "red & position(0.3, 0.3) & position(0.7, 0.7)"),
             ("2 * (position(0.3, 0.3) & position(0.7, 0.7) & red)",
              "position(0.3, 0.3) & position(0.7, 0.7) & 2 * red")]
    _assert_lowered_alike(pairs, reg)
    assert sorted(_energy_terms(compile_expr(pairs[2][0], reg)).values()) == [-3.0, 1.0, 1.0, 2.0]


@pytest.mark.parametrize("text,groups", [
    ("red | 2 * (green | position(0.3, 0.3) & position(0.7, 0.7))",
     {"red", "2 * green", "2 * (position(0.3, 0.3) & position(0.7, 0.7))"}),
    ("3 * (0.5 * (green | position(0.7, 0.5)) & (position(0.6, 0.5) | ~position(0.4, 0.5) & 1.5 * purple))",
     {"3 * (0.5 * green & position(0.6, 0.5))", "3 * (0.5 * green & ~position(0.4, 0.5) & 1.5 * purple)",
      "3 * (0.5 * position(0.7, 0.5) & position(0.6, 0.5))",
      "3 * (0.5 * position(0.7, 0.5) & ~position(0.4, 0.5) & 1.5 * purple)"}),
    ("(circle & ~(circle & yellow) | position(0.3, 0.3) & position(0.7, 0.4)) & 1.5 * (~yellow | small)",
     {"circle & ~(circle & yellow) & 1.5 * ~yellow", "circle & ~(circle & yellow) & 1.5 * small",
      "position(0.3, 0.3) & position(0.7, 0.4) & 1.5 * ~yellow", "position(0.3, 0.3) & position(0.7, 0.4) & 1.5 * small"}),
])
def test_a_two_object_branch_inside_nested_or_weighted_ors_is_distributed(text, groups):
    """ORs nested in weights or conjunctions are distributed too, a negated compound kept as one
    term (these did not compile: the equal-share mixture needs log-sum-exp energies, which the
    implicit models lack); each written branch takes an equal share, the weights on its disjuncts
    as a whole."""
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    g = compile_expr(text, reg)
    assert g.route == "dnf"
    shares: dict[str, float] = {}
    for d in g.disjuncts:
        shares[d.group] = shares.get(d.group, 0.0) + d.share
    assert set(shares) == groups
    assert all(abs(v - 1 / len(groups)) < 1e-9 for v in shares.values())


def test_a_weighted_place_beside_another_joins_the_layout_its_share_at_its_objects_point():
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    g = compile_expr("position(0.3, 0.3) & 2 * position(0.7, 0.7)", reg)
    assert [leaf.label for leaf in g.leaves] == [
        "position(drawn near 0.3, 0.3) & shape(drawn) & color(drawn) & size(drawn)",
        "position(drawn near 0.7, 0.7) & shape(drawn) & color(drawn) & size(drawn)",
        "position(drawn near 0.7, 0.7)", "prior"]
    assert g.linear_coefs == (1.0, 1.0, 1.0, -2.0)
    values = draw_chain_values(g, 64, seed=2)
    assert torch.equal(values[(2, "position")], values[(1, "position")])  # the same point per chain
    assert ((values[(1, "position")] - torch.tensor([0.7, 0.7])).norm(dim=1) <= 0.05 + 1e-6).all()
    assert ((values[(0, "position")] - torch.tensor([0.3, 0.3])).norm(dim=1) <= 0.05 + 1e-6).all()
    g = compile_expr("0.5 * position(0.3, 0.3) & position(0.7, 0.6) & red", reg)
    assert g.linear_coefs == (1.0, -0.5, 1.0, 1.0, -1.5)
    assert g.leaves[0].condition["color"].some == (("color", "red"),)


def test_a_negated_place_far_from_every_place_is_implied_by_the_layout():
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    g = compile_expr("position(0.3, 0.3) & position(0.7, 0.7) & ~position(0.5, 0.5)", reg)
    plain = compile_expr("position(0.3, 0.3) & position(0.7, 0.7)", reg)
    assert _energy_terms(g) == _energy_terms(plain) and len(g.leaves) == 3
    assert [(x.negated, x.how) for x in g.groundings] == [("position(0.5, 0.5)", "implied")]
    assert "every place farther than 0.15 from this one" in g.groundings[0].describe()
    # within 0.15 of a place (0.4, 0.35 is 0.11 from 0.3, 0.3): a drawn object could stand there
    g = compile_expr("position(0.3, 0.3) & position(0.7, 0.7) & ~position(0.4, 0.35)", reg)
    assert not any(isinstance(v, Drawn) for leaf in g.leaves for v in leaf.condition.values())


def test_the_object_level_set_draws_each_objects_shape_colour_and_size():
    from conceptlang.evaluation.objects import objects_registry

    reg, _ = objects_registry()
    g = compile_expr("position(0.25, 0.3) & position(0.75, 0.7)", reg)  # the set's shipped options
    assert g.options["free_families"] == "data" and g.options["named_positions"] == "data"
    assert g.options["named_radius"] == 0.05
    assert g.drawn_leaves == {0: ("position", "shape", "color", "size"), 1: ("position", "shape", "color", "size")}
    assert g.linear_coefs == (1.0, 1.0, -1.0) and g.leaves[0].condition["shape"].layout == (0.25, 0.3, 0.75, 0.7)
    # each object's centre drawn over the disc of radius 0.05 around its point, as the data spreads it
    values = draw_chain_values(g, 400, seed=2)
    for leaf, point in ((0, (0.25, 0.3)), (1, (0.75, 0.7))):
        d = np.linalg.norm(values[(leaf, "position")].numpy() - point, axis=1)
        assert d.max() <= 0.05 + 1e-6 and d.mean() == pytest.approx(0.05 * 2 / 3, abs=0.003)
        assert len(np.unique(values[(leaf, "position")].numpy(), axis=0)) == 400
