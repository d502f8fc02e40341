"""Mirror averaging (manifest ``mirror``): below a noise level, sampling averages a model's prediction
with the mirror image of its prediction at the mirror image of the input."""

import pytest
import torch

from conceptlang.errors import ModelError
from conceptlang.models.concept_model import ImplicitConceptModel
from conceptlang.models.manifest import GuidanceSettings

from .test_autoguide import _net


def _model(**kw):
    return ImplicitConceptModel(_net((8, 16)), "m", "scenes", guidance=3.0, **kw)


def _inputs(m):
    torch.manual_seed(1)
    x = torch.randn(6, 3, 32, 32)
    cond = m.encode([{"color": "red", "position": (0.2, 0.7)}, {}, {"shape": "circle", "position": (0.9, 0.4)},
                     {"size": "large"}, {"position": (0.5, 0.1)}, {"color": "blue"}])
    sigma = torch.tensor([0.05, 0.05, 0.2, 0.5, 5.0, 0.29])
    return x, cond, sigma


def test_the_condition_reflects_only_set_parameters():
    m = _model()
    m.set_mirror(0.3, ["position.x"])
    _, cond, _ = _inputs(m)
    out = m.mirrored_condition(cond)
    want = m.encode([{"color": "red", "position": (0.8, 0.7)}, {}, {"shape": "circle", "position": (0.1, 0.4)},
                     {"size": "large"}, {"position": (0.5, 0.1)}, {"color": "blue"}])
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)
    assert torch.equal(cond, m.encode([{"color": "red", "position": (0.2, 0.7)}, {},
                                       {"shape": "circle", "position": (0.9, 0.4)}, {"size": "large"},
                                       {"position": (0.5, 0.1)}, {"color": "blue"}]))  # not changed in place


def test_below_its_level_the_prediction_is_the_average_with_the_mirror_view():
    plain, m = _model(), _model()
    m.set_mirror(0.3, ["position.x"])
    x, cond, sigma = _inputs(m)
    with torch.no_grad():
        direct = plain.eps(x, cond, sigma)
        mirror = plain.eps(x.flip(-1), m.mirrored_condition(cond), sigma).flip(-1)
        plain.forward_rows = m.forward_rows = 0
        plain.eps(x, cond, sigma)
        out = m.eps(x, cond, sigma)
    below = sigma < 0.3
    torch.testing.assert_close(out[below], 0.5 * (direct + mirror)[below], rtol=0, atol=1e-6)
    assert torch.equal(out[~below], direct[~below])
    assert not torch.allclose(direct[below], out[below], atol=1e-4)
    # the mirror view costs its rows again: the four rows below 0.3 each take a prior pass, and the
    # three of them with a condition a conditional pass (guided at every level here)
    assert m.forward_rows - plain.forward_rows == 4 + 3
    assert m.passes_per_row == 2 and plain.passes_per_row == 1


def test_the_averaged_prediction_is_mirror_equivariant():
    m = _model()
    m.set_mirror(1.0, ["position.x"])
    x, cond, sigma = _inputs(m)
    sigma = sigma.clamp(max=0.9)
    with torch.no_grad():
        out = m.eps(x, cond, sigma)
        flipped = m.eps(x.flip(-1), m.mirrored_condition(cond), sigma)
    torch.testing.assert_close(flipped, out.flip(-1), rtol=0, atol=1e-5)


def test_energies_and_levels_above_are_unchanged():
    plain, m = _model(), _model()
    m.set_mirror(0.3, ["position.x"])
    x, cond, _ = _inputs(m)
    with torch.no_grad():
        assert torch.equal(plain.energy(x, cond, None), m.energy(x, cond, None))
        high = torch.full((6,), 0.3)
        assert torch.equal(plain.eps(x, cond, high), m.eps(x, cond, high))


def test_bad_settings_are_refused():
    m = _model()
    with pytest.raises(ModelError, match="not a parameter of a continuous family"):
        m.set_mirror(0.3, ["position.z"])
    with pytest.raises(ModelError, match="not a parameter of a continuous family"):
        m.set_mirror(0.3, ["color.x"])
    for level in (-0.1, float("nan")):
        with pytest.raises(ModelError, match="mirror's noise level must be >= 0"):
            m.set_mirror(level)
    assert m.mirror_below is None and m.passes_per_row == 1


def test_the_entry_key_is_read_and_described():
    g = GuidanceSettings.of_entry({"guidance": 2, "mirror": {"below": 0.3, "reflect": ["position.x"]}})
    assert (g.mirror_below, g.mirror_reflect) == (0.3, ("position.x",)) and g.guided
    assert g.describe() == "w = 2; below σ 0.3 averaged with its mirror image (position.x reflected)"
    assert GuidanceSettings.of_entry({"mirror": {"below": 0.1}}).describe() == (
        "w = 1; below σ 0.1 averaged with its mirror image")


TURNS = {"when": {"shape": ["circle", "square"]}, "reflect": ["position.y"], "swap": ["position.x", "position.y"]}


def _turning_model():
    m = _model()
    m.set_mirror(0.3, ["position.x"], TURNS)
    return m


def test_rows_turn_by_octave_of_sigma_where_the_condition_holds():
    m = _turning_model()
    cond = m.encode([{"shape": "circle"}] * 6 + [{"shape": "square", "position": (0.2, 0.3)},
                                                 {"shape": "triangle"}, {}])
    sigma = torch.tensor([0.2, 0.1, 0.05, 0.02, 0.01, 0.5, 0.1, 0.1, 0.1])
    # octaves below the mirror's 0.3, ⌊log₂(0.3/σ)⌋ = 0, 1, 2, 3, 4 → orientations 0, 1, 2, 3, 0; none
    # at or above the mirror's level, nor for a triangle or a row without a shape
    assert m.turn_index(cond, sigma).tolist() == [0, 1, 2, 3, 0, 0, 1, 0, 0]
    assert _model().turn_index(cond, sigma).tolist() == [0] * 9


@pytest.mark.parametrize("k,position", [(1, (0.2, 0.7)), (2, (0.3, 0.2)), (3, (0.3, 0.8))])
def test_a_turn_maps_the_image_and_the_position_together(k, position):
    m = _turning_model()
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    cond = m.encode([{"shape": "square", "position": (0.2, 0.3)}, {"shape": "circle"}])
    xt, ct = m.turned(x, cond, k)
    want_x = x.transpose(-1, -2) if k & 2 else x
    want_x = want_x.flip(-2) if k & 1 else want_x
    assert torch.equal(xt, want_x)
    torch.testing.assert_close(ct, m.encode([{"shape": "square", "position": position}, {"shape": "circle"}]),
                               rtol=0, atol=1e-6)
    assert torch.equal(m.unturned(xt, k), x)


def test_a_turned_row_averages_its_mirror_pair_in_its_orientation_at_no_extra_rows():
    plain, m = _model(), _turning_model()
    plain.set_mirror(0.3, ["position.x"])
    x, cond, sigma = _inputs(m)
    cond = m.encode([{"shape": "square", "position": (0.2, 0.7)}, {"shape": "triangle"},
                     {"shape": "circle", "position": (0.9, 0.4)}, {"shape": "circle"}, {"shape": "square"},
                     {"shape": "circle", "color": "blue"}])
    sigma = torch.tensor([0.02, 0.1, 0.06, 0.5, 0.2, 0.1])  # orientations 3, 0, 2, 0, 0, 1
    assert m.turn_index(cond, sigma).tolist() == [3, 0, 2, 0, 0, 1]
    with torch.no_grad():
        out = m.eps(x, cond, sigma)
        rows = m.forward_rows
        want = plain.eps(x, cond, sigma)
        assert plain.forward_rows == rows  # the same rows, taken in other orientations
        for i, k in ((0, 3), (2, 2), (5, 1)):
            xt, ct = m.turned(x[i:i + 1], cond[i:i + 1], k)
            want[i:i + 1] = m.unturned(plain.eps(xt, ct, sigma[i:i + 1]), k)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)
    assert not torch.allclose(out[0], plain.eps(x[:1], cond[:1], sigma[:1])[0], atol=1e-4)


def test_bad_turns_are_refused():
    m = _model()
    bad = [({"when": {}, "swap": ["position.x", "position.y"]}, "need 'when'"),
           ({"when": {"shape": ["hexagon"]}, "swap": ["position.x", "position.y"]}, "does not name values"),
           ({"when": {"position": ["x"]}, "swap": ["position.x", "position.y"]}, "does not name values"),
           ({"when": {"shape": ["circle"]}, "swap": ["position.x"]}, "must swap two parameters"),
           ({"when": {"shape": ["circle"]}, "swap": ["position.x", "position.x"]}, "must swap two parameters"),
           ({"when": {"shape": ["circle"]}, "reflect": ["color.y"], "swap": ["position.x", "position.y"]},
            "not a parameter of a continuous family")]
    for turns, message in bad:
        with pytest.raises(ModelError, match=message):
            m.set_mirror(0.3, ["position.x"], turns)
    assert m.mirror_below is None and m.mirror_turns is None


def test_the_turns_are_read_and_described():
    g = GuidanceSettings.of_entry({"guidance": 2, "mirror": {"below": 0.3, "reflect": ["position.x"], "turns": TURNS}})
    assert g.mirror_turns == ((("shape", ("circle", "square")),), ("position.y",), ("position.x", "position.y"))
    assert g.describe() == ("w = 2; below σ 0.3 averaged with its mirror image (position.x reflected), "
                            "circle/square shape rows turned a quarter or flipped up-down by octave of σ")
    assert _turning_model().guidance_settings.mirror_turns == g.mirror_turns
