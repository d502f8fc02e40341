import numpy as np
import pytest
import torch

from conceptlang.errors import DataError, ModelError
from conceptlang.inference.inference import infer, infer_batch
from tests.evaluation.fakes import COLORS, TemplateRegistry, render


@pytest.fixture
def registry():
    return TemplateRegistry()


@pytest.mark.parametrize("color,x,y", [("red", 0.3, 0.4), ("green", 0.62, 0.71), ("blue", 0.5, 0.25)])
def test_infer_recovers_the_exact_concepts(registry, color, x, y):
    res = infer(render(color, x, y), registry, domain="toy")
    fam = res.families["color"]
    assert fam.value == color
    assert [v for v, _ in fam.ranking][0] == color
    assert sorted(v for v, _ in fam.ranking) == sorted(COLORS)
    energies = [e for _, e in fam.ranking]
    assert energies == sorted(energies)
    px, py = res.families["position"].value
    assert abs(px - x) < 0.01 and abs(py - y) < 0.01
    assert res.labels[color] and res.labels[f"color.{color}"]
    assert not any(res.labels[c] for c in COLORS if c != color)
    assert res.labels["objects"][0]["color"] == color
    assert res.labels["objects"][0]["x"] == pytest.approx(px)


def test_binary_family_is_decided_against_the_prior(registry):
    dark = render("red", 0.5, 0.5)  # mostly black: mean < 0 → glow energy > prior energy (0)
    bright = np.full((16, 16, 3), 230, np.uint8)
    r_dark, r_bright = infer_batch(np.stack([dark, bright]), registry, domain="toy")
    assert r_dark.families["glow"].value is False and r_dark.labels["glow"] is False
    assert r_bright.families["glow"].value is True and r_bright.labels["glow.glow"] is True
    assert {v for v, _ in r_bright.families["glow"].ranking} == {"glow", "(prior)"}


def test_batch_matches_single_image_inference(registry):
    imgs = np.stack([render("green", 0.35, 0.65), render("blue", 0.7, 0.3)])
    batch = infer_batch(imgs, registry, domain="toy")
    for i in range(2):
        single = infer(imgs[i], registry, domain="toy")
        assert single.families["color"].value == batch[i].families["color"].value
        assert single.families["position"].value == pytest.approx(batch[i].families["position"].value, abs=1e-6)


def test_float_tensor_input_is_accepted(registry):
    img = render("blue", 0.4, 0.6)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1  # (3, H, W) in [-1, 1]
    assert infer(x, registry, domain="toy").families["color"].value == "blue"


def test_domain_is_chosen_when_only_one_fits(registry, monkeypatch):
    import conceptlang.data as data

    monkeypatch.setattr(data, "DOMAIN_NAMES", ("scenes", "toy"))
    res = infer(render("red", 0.5, 0.5), registry)
    assert res.domain == "toy" and "only domain" in res.domain_choice


def test_wrong_image_size_is_a_clear_error(registry):
    with pytest.raises(DataError, match="takes 3×16×16"):
        infer(np.zeros((8, 8, 3), np.uint8), registry, domain="toy")


def test_non_uint8_arrays_are_rejected(registry):
    with pytest.raises(DataError, match="uint8"):
        infer(np.zeros((16, 16, 3), np.float32), registry, domain="toy")


def test_unknown_domain_is_a_clear_error(registry):
    with pytest.raises(ModelError, match="nowhere"):
        infer(render("red", 0.5, 0.5), registry, domain="nowhere")


def test_format_and_json(registry):
    res = infer(render("green", 0.5, 0.5), registry, domain="toy")
    text = res.format()
    assert "color: green" in text and "position: (0.5" in text and "glow: no" in text
    j = res.to_json()
    assert j["families"]["color"]["value"] == "green"
    assert len(j["families"]["position"]["value"]) == 2


def test_position_search_stays_on_the_generators_support(monkeypatch):
    import conceptlang.inference.inference as inference
    from conceptlang.data import get_domain

    monkeypatch.setattr(inference, "_SUPPORT_CACHE", {})
    (xlo, xhi), (ylo, yhi) = inference.parameter_support("scenes", get_domain("scenes").family("position"))
    # objects keep a 1/32 margin plus half the small extent (9/64) from the border
    assert 0.15 < xlo < 0.18 and 0.82 < xhi < 0.85 and 0.15 < ylo < 0.18 and 0.82 < yhi < 0.85
    from tests.evaluation.fakes import TOY

    assert inference.parameter_support("toy", TOY.family("position")) == ((0.0, 1.0), (0.0, 1.0))


def test_binary_family_uses_the_known_absent_condition_when_the_model_has_one(registry):
    from conceptlang.models.conditions import ABSENT, NONE_TOKEN
    from conceptlang.models.networks import SlotSpec

    glow = registry.models["glow"]
    plain_encode, plain_energy = glow.encode, glow.energy

    def encode(conditions):
        rows = [c for c in conditions]
        out = plain_encode([{} if c.get("glow") is ABSENT else c for c in rows])
        for i, c in enumerate(rows):
            if c.get("glow") is ABSENT:
                out[i, 0] = 2.0  # the <none> token
        return out

    def energy(x, cond, sigma):
        e = plain_energy(x, cond, sigma)
        return torch.where(cond[:, 0] == 2.0, torch.ones_like(e), e)  # E(x | not glow) = 1

    x = torch.full((1, 3, 16, 16), -0.05)  # E(x | glow) = −10·mean = 0.5: above the prior (0), below "not glow" (1)
    assert infer(x, registry, domain="toy").families["glow"].value is False  # no absent token: vs the prior
    glow.slots = (SlotSpec("glow", "discrete", values=("glow", NONE_TOKEN)),)
    glow.encode, glow.energy = encode, energy
    fam = infer(x, registry, domain="toy").families["glow"]
    assert fam.value is True
    assert fam.ranking == [("glow", pytest.approx(0.5)), ("(not)", 1.0)]


@pytest.mark.parametrize("stack_pixels", [1 << 18, 3 * 16 * 16 * 2])  # one call; chunks of 2 rows
def test_stacked_energies_equal_one_call_per_condition(registry, monkeypatch, stack_pixels):
    from conceptlang.inference import inference

    monkeypatch.setattr(inference, "_STACK_PIXELS", stack_pixels)
    model = registry.models["color"]
    calls = []
    plain = model.energy
    monkeypatch.setattr(model, "energy", lambda x, c, s: calls.append(x.shape[0]) or plain(x, c, s))
    imgs = np.stack([render("green", 0.35, 0.65), render("blue", 0.7, 0.3), render("red", 0.5, 0.5)])
    x = inference._as_tensor(imgs)
    conds = [{"color": c} for c in COLORS]
    got = inference._energies_per_condition(model, x, conds)
    want = np.stack([plain(x, model.encode([c]).expand(3, -1), None).double().numpy() for c in conds], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    rows = len(conds) * 3
    assert calls == ([rows] if stack_pixels >= rows * 3 * 16 * 16 else [2] * (rows // 2) + [rows % 2] * (rows % 2))
    calls.clear()
    per_image = [[conds[(i + j) % len(conds)] for j in range(2)] for i in range(3)]
    got = inference._energies_rowwise(model, x, per_image)
    for i in range(3):
        for j in range(2):
            want = plain(x[i:i + 1], model.encode([per_image[i][j]]), None).item()
            assert got[i, j] == pytest.approx(want, rel=1e-6)


def test_position_search_conditions_on_the_inferred_discrete_values_through_the_joint_hook(registry):
    asked = []

    def joint(refs):
        asked.append(tuple(refs))
        pos = [r for r in refs if r.family == "position"]
        if len(pos) != 1:
            return None
        model, cond = registry.model_for(pos[0])
        return model, {**cond, **{r.family: r.value for r in refs if r.params is None}}

    img = render("green", 0.62, 0.71)
    plain = infer(img, registry, domain="toy")
    registry.joint = joint
    res = infer(img, registry, domain="toy")
    searched = [refs for refs in asked if refs[-1].family == "position"]  # the rest re-rank colour
    assert searched and all({r.family for r in refs} == {"color", "glow", "position"} or
                            {r.family for r in refs} == {"color", "position"} for refs in searched)
    assert all(r.value == "green" for refs in searched for r in refs if r.family == "color")
    assert res.families["position"].value == pytest.approx(plain.families["position"].value, abs=1e-9)
    asked.clear()
    no_context = infer(img, registry, domain="toy", joint=False)
    assert asked == [] and no_context.families["position"].value == plain.families["position"].value


def test_discrete_families_are_reranked_under_the_whole_inferred_description(registry):
    """The joint hook's colour condition here depends on the candidate's context: right of x = 0.5
    it scores candidate v by the template of SWAP[v], so the re-ranked colour is the one whose swap
    is the true colour, with the marginal's energies as its scores; left of it nothing changes."""
    swap = {"red": "green", "green": "blue", "blue": "red"}
    asked = []

    def joint(refs):
        asked.append(tuple(refs))
        last, pos = refs[-1], [r for r in refs if r.family == "position"]
        if last.family == "position":  # the position search: score the point alone
            return registry.model_for(last)
        if last.family != "color" or len(pos) != 1:
            return None
        right = pos[0].params[0] > 0.5
        return registry.models["color"], {"color": swap[last.value] if right else last.value}

    imgs = np.stack([render("green", 0.62, 0.71), render("blue", 0.3, 0.4)])
    marginal = infer_batch(imgs, registry, domain="toy")
    registry.joint = joint
    got = infer_batch(imgs, registry, domain="toy")
    assert [r.families["color"].value for r in marginal] == ["green", "blue"]
    assert [r.families["color"].value for r in got] == ["red", "blue"]  # swap["red"] == "green"
    right, left = got[0].families["color"], got[1].families["color"]
    assert right.readout == left.readout == "in context"
    unswap = {v: k for k, v in swap.items()}
    assert right.ranking[0] == ("red", marginal[0].families["color"].ranking[0][1])
    assert dict(right.ranking) == {unswap[v]: e for v, e in marginal[0].families["color"].ranking}
    assert left.ranking == marginal[1].families["color"].ranking
    assert "in context scores: red" in got[0].format()
    # every re-ranking ask carries the image's inferred position and names each colour once
    reranks = [refs for refs in asked if refs[-1].family == "color"]
    assert sorted(r[-1].value for r in reranks) == sorted(list(COLORS) * 2)
    for refs in reranks:
        (p,) = [r.params for r in refs if r.family == "position"]
        assert p in (got[0].families["position"].value, got[1].families["position"].value)
    assert got[0].families["position"].value == pytest.approx((0.62, 0.71), abs=0.02)
    # rerank=False, or joint=False, keeps the marginal ranking; a hook that serves nothing changes nothing
    for kw in ({"rerank": False}, {"joint": False}):
        kept = infer_batch(imgs, registry, domain="toy", **kw)
        assert [r.families["color"].ranking for r in kept] == [r.families["color"].ranking for r in marginal]
    registry.joint = lambda refs: registry.model_for(refs[-1]) if refs[-1].family == "position" else None
    kept = infer_batch(imgs, registry, domain="toy")
    assert [r.families["color"].readout for r in kept] == ["energy", "energy"]
    assert [r.families["color"].ranking for r in kept] == [r.families["color"].ranking for r in marginal]


def test_the_default_coarse_grid_is_finer_than_a_narrow_basin(registry):
    """An energy like the scenes model's: a narrow basin at the object, higher still at a near miss,
    and a plateau far away (measured: a miss of 0.12 scores about three times a far place). A coarse
    cell must fall inside the basin, or the search settles on the plateau."""
    from tests.evaluation.fakes import TemplateModel

    truth = np.array([1 / 3, 1 / 3])  # between the centres of a 6×6 grid (0.25, 0.42), near a 12×12 one's

    class Basin(TemplateModel):
        def energy(self, x, cond, sigma):
            d = torch.hypot(cond[:, 1].double() - truth[0], cond[:, 2].double() - truth[1])
            return torch.where(d < 0.15, 500 * (d / 0.07) ** 2, torch.full_like(d, 500.0)).float()

    registry.models["position"] = Basin("position")
    image = render("red", *truth)
    err = lambda res: float(np.hypot(*np.subtract(res.families["position"].value, truth)))  # noqa: E731
    assert err(infer(image, registry, domain="toy")) < 0.005
    assert err(infer(image, registry, domain="toy", coarse=6)) > 0.15  # the old 6×6 grid lands on the plateau
