import pytest
import torch

from conceptlang.data import generate, get_domain
from conceptlang.errors import ModelError
from conceptlang.models.concept_model import ExplicitConceptModel, ImplicitConceptModel
from conceptlang.models.conditions import NONE_TOKEN, encode_conditions, slots_for_domain, training_conditions
from conceptlang.models.networks import (
    EnergyNet,
    EnergyNetConfig,
    PixelNet,
    PixelNetConfig,
    UNet,
    UNetConfig,
    condition_width,
    count_parameters,
)

SCENE_SLOTS = slots_for_domain(get_domain("scenes"))
FACE_SLOTS = slots_for_domain(get_domain("faces"))


def test_slots_follow_the_domain():
    assert [s.family for s in SCENE_SLOTS] == ["shape", "color", "size", "position"]
    assert condition_width(SCENE_SLOTS) == 1 + 1 + 1 + 3
    # binary faces families get a known-absent token, the exclusive hair family does not
    assert FACE_SLOTS[0].values == ("black_hair", "blond_hair", "brown_hair", "bald")
    assert FACE_SLOTS[1].values == ("male", NONE_TOKEN)


@pytest.mark.parametrize("widths,attention", [((8, 16), False), ((8, 16, 16), True)])
def test_unet_shapes_and_noise_relation(widths, attention):
    torch.manual_seed(0)
    net = UNet(UNetConfig(widths=widths, emb_dim=16, groups=4, attention=attention, slots=SCENE_SLOTS))
    x = torch.randn(5, 3, 32, 32)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0])
    cond = encode_conditions(SCENE_SLOTS, [{}, {"color": "red"}, {"position": (0.2, 0.8)}, {"shape": "circle", "size": "large"}, {}])
    eps = net(x, sigma, cond)
    d = net.denoise(x, sigma, cond)
    assert eps.shape == d.shape == (5, 3, 32, 32)
    torch.testing.assert_close(eps, (x - d) / sigma[:, None, None, None], rtol=0, atol=0)
    # zero-initialised output conv: a fresh net's denoiser is EDM's c_skip·x exactly
    c_skip = 0.25 / (sigma**2 + 0.25)
    torch.testing.assert_close(d, c_skip[:, None, None, None] * x)


def _randomised_pixel_net(**config) -> PixelNet:
    """A small PixelNet over the scenes slots (``config`` overrides its settings) with random weights."""
    torch.manual_seed(0)
    net = PixelNet(PixelNetConfig(**{"widths": (8, 12), "emb_dim": 16, "slots": SCENE_SLOTS, **config}))
    with torch.no_grad():  # the zero-initialised output would make every check below trivial
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net


@pytest.mark.parametrize("context", [True, False])
def test_pixel_net_is_equivariant_under_any_permutation_of_pixels(context):
    """Its output at a pixel depends on that pixel (and, with context, the image's pixel multiset) only."""
    net = _randomised_pixel_net(context=context)
    x = torch.randn(3, 3, 32, 32)
    sigma = torch.tensor([0.05, 0.5, 2.0])
    cond = encode_conditions(SCENE_SLOTS, [{"color": "red"}, {}, {"shape": "circle", "color": "blue"}])
    perm = torch.randperm(32 * 32, generator=torch.Generator().manual_seed(1))

    def shuffle(t):
        return t.flatten(2)[:, :, perm].reshape(t.shape)

    eps = net(x, sigma, cond)
    assert eps.shape == (3, 3, 32, 32) and torch.isfinite(eps).all()
    torch.testing.assert_close(net(shuffle(x), sigma, cond), shuffle(eps), rtol=1e-5, atol=1e-5)
    # the condition matters: a red and a blue object get different predictions
    assert (net(x, sigma, cond[[2, 1, 0]]) - eps).abs().amax() > 1e-2
    # a different image elsewhere changes a pixel's output only through the pooled context
    y = x.clone()
    y[:, :, :16] = torch.randn(3, 3, 16, 32)
    same_half = (net(y, sigma, cond) - eps)[:, :, 16:].abs().amax().item()
    assert (same_half > 1e-3) if context else (same_half == 0.0)


def test_blurred_pixel_net_is_equivariant_under_the_square_symmetries_only():
    """With round blur channels a pixel sees its neighbourhood, but no direction: flips and quarter turns commute."""
    net = _randomised_pixel_net(blur=(1.0, 2.5))
    x = torch.randn(2, 3, 32, 32)
    sigma = torch.tensor([0.1, 1.0])
    cond = encode_conditions(SCENE_SLOTS, [{"color": "green"}, {}])
    eps = net(x, sigma, cond)
    for op in (lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.transpose(-1, -2), lambda t: t.rot90(1, (-2, -1))):
        torch.testing.assert_close(net(op(x), sigma, cond), op(eps), rtol=1e-5, atol=1e-5)
    # ...but not under an arbitrary permutation of the pixels: the blur reads neighbours
    perm = torch.randperm(32 * 32, generator=torch.Generator().manual_seed(1))
    shuffled = net(x.flatten(2)[:, :, perm].reshape(x.shape), sigma, cond)
    assert (shuffled - eps.flatten(2)[:, :, perm].reshape(x.shape)).abs().amax() > 1e-2
    assert PixelNetConfig.from_json(net.config.to_json()).blur == (1.0, 2.5)
    with pytest.raises(ValueError, match="blur widths must be in"):
        PixelNet(PixelNetConfig(widths=(8,), blur=(0.0,), slots=SCENE_SLOTS))
    with pytest.raises(ValueError, match="blur_of must be 'rgb' or 'max', got 'luma'"):
        PixelNet(PixelNetConfig(widths=(8,), blur=(1.0,), blur_of="luma", slots=SCENE_SLOTS))


def test_max_blur_tells_where_an_object_is_but_not_its_colour():
    """blur_of="max" blurs one brightness map per width: a background pixel next to a red square
    and one next to a blue square (same per-pixel maximum) get the same output; with blurred
    colour channels they do not. (Nets without the context pooling, which sees every colour.)"""

    by_max, by_rgb = (_randomised_pixel_net(widths=(8,), context=False, blur=(1.5,), blur_of=b) for b in ("max", "rgb"))
    assert (by_max.conv_in.in_channels, by_rgb.conv_in.in_channels) == (3 + 1, 3 + 3)
    sigma, cond = torch.tensor([0.2]), encode_conditions(SCENE_SLOTS, [{"color": "red"}])
    red, blue = torch.full((1, 3, 32, 32), -1.0), torch.full((1, 3, 32, 32), -1.0)
    red[0, 0, 8:20, 8:20] = 0.8
    blue[0, 2, 8:20, 8:20] = 0.8
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[8:20, 8:20] = False
    torch.testing.assert_close(by_max(red, sigma, cond)[..., outside], by_max(blue, sigma, cond)[..., outside])
    assert (by_rgb(red, sigma, cond)[..., outside] - by_rgb(blue, sigma, cond)[..., outside]).abs().amax() > 1e-3


def test_spatial_pixel_net_knows_the_distance_to_its_point_not_the_direction():
    """With a position bump map a pixel knows how far it lies from the conditioned point, not in
    which direction: on a flat image, pixels at one distance from the point get one output (so no
    outline can be drawn around it), pixels at other distances other outputs, and moving the point
    moves the rings. At the centre point, quarter turns and flips of any image commute with the net."""
    net = _randomised_pixel_net(context=False, spatial=("position",), spatial_width=0.1)
    assert net.conv_in.in_channels == 3 + 1
    back = PixelNetConfig.from_json(net.config.to_json())
    assert back == net.config and back.spatial == ("position",)
    sigma = torch.tensor([0.3])

    def at(px, py):
        return encode_conditions(SCENE_SLOTS, [{"position": (px, py), "color": "red"}])

    flat = torch.full((1, 3, 32, 32), 0.2)
    out = net(flat, sigma, at(10.5 / 32, 12.5 / 32))[0]  # the point at the centre of pixel (row 12, column 10)
    ring = [out[:, 12, 13], out[:, 12, 7], out[:, 15, 10], out[:, 9, 10]]  # three pixels away, four directions
    for v in ring[1:]:
        torch.testing.assert_close(v, ring[0], rtol=1e-5, atol=1e-6)
    assert (out[:, 12, 11] - ring[0]).abs().amax() > 1e-3  # one pixel away: another output
    moved = net(flat, sigma, at(20.5 / 32, 12.5 / 32))[0]
    assert (moved[:, 12, 13] - ring[0]).abs().amax() > 1e-3
    torch.testing.assert_close(moved[:, 12, 23], moved[:, 12, 17], rtol=1e-5, atol=1e-6)  # around the moved point
    torch.testing.assert_close(moved[:, 15, 20], moved[:, 12, 17], rtol=1e-5, atol=1e-6)
    x = torch.randn(2, 3, 32, 32)
    centre = encode_conditions(SCENE_SLOTS, [{"position": (0.5, 0.5)}, {"position": (0.5, 0.5), "shape": "circle"}])
    eps = net(x, torch.tensor([0.1, 1.0]), centre)
    for op in (lambda t: t.flip(-1), lambda t: t.transpose(-1, -2), lambda t: t.rot90(1, (-2, -1))):
        torch.testing.assert_close(net(op(x), torch.tensor([0.1, 1.0]), centre), op(eps), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="must be continuous"):
        PixelNet(PixelNetConfig(widths=(8,), slots=SCENE_SLOTS, spatial=("shape",)))


def test_pixel_net_starts_as_c_skip_and_round_trips_its_config():
    net = PixelNet(PixelNetConfig(widths=(8,), emb_dim=16, slots=SCENE_SLOTS))
    x = torch.randn(2, 3, 32, 32)
    sigma = torch.tensor([0.1, 1.0])
    d = net.denoise(x, sigma, encode_conditions(SCENE_SLOTS, [{}, {"color": "red"}]))
    torch.testing.assert_close(d, (0.25 / (sigma**2 + 0.25))[:, None, None, None] * x)
    assert PixelNetConfig.from_json(net.config.to_json()) == net.config
    with pytest.raises(ValueError, match="at least one block"):
        PixelNet(PixelNetConfig(widths=(), slots=SCENE_SLOTS))


def test_energy_net_shapes_and_spectral_norm():
    cfg = EnergyNetConfig(widths=(8, 16), emb_dim=16, slots=SCENE_SLOTS, noise_conditional=True, spectral_norm=True)
    net = EnergyNet(cfg)
    x = torch.randn(3, 3, 32, 32)
    e = net(x, torch.tensor([0.1, 0.5, 1.0]), torch.zeros(3, condition_width(SCENE_SLOTS)))
    assert e.shape == (3,)
    assert 1000 < count_parameters(net) < 100_000
    with pytest.raises(ValueError, match="needs sigma"):
        net(x, None, torch.zeros(3, condition_width(SCENE_SLOTS)))


def test_encode_conditions_layout_and_errors():
    c = encode_conditions(SCENE_SLOTS, [{}, {"shape": "triangle"}, {"color": "cyan", "position": (0.25, 0.75)}])
    assert c.tolist() == [[0, 0, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0], [0, 6, 0, 1, 0.25, 0.75]]
    with pytest.raises(ModelError, match="'color' has no value 'mauve'"):
        encode_conditions(SCENE_SLOTS, [{"color": "mauve"}])
    with pytest.raises(ModelError, match="no condition slot for family 'hair'"):
        encode_conditions(SCENE_SLOTS, [{"hair": "bald"}])
    with pytest.raises(ModelError, match="outside its range"):
        encode_conditions(SCENE_SLOTS, [{"position": (1.5, 0.5)}])
    with pytest.raises(ModelError, match="takes 2 parameters"):
        encode_conditions(SCENE_SLOTS, [{"position": (0.5,)}])
    with pytest.raises(ModelError, match="has no value '<none>'"):
        encode_conditions(FACE_SLOTS, [{"male": NONE_TOKEN}])


def test_training_conditions_tokens_and_dropout_modes():
    _, arrays = generate("faces", 64, seed=3, as_arrays=True)
    g = torch.Generator().manual_seed(0)
    full = training_conditions(FACE_SLOTS, arrays.index, arrays.positions, 0.0, g)
    hair = torch.from_numpy(arrays.index["hair"][:, 0]) + 1
    male = torch.where(torch.from_numpy(arrays.index["male"][:, 0]) == 0, 1, 2)  # male → 1, absent → <none> = 2
    assert torch.equal(full[:, 0].long(), hair) and torch.equal(full[:, 1].long(), male)
    assert set(full[:, 1].long().tolist()) == {1, 2}
    nothing = training_conditions(FACE_SLOTS, arrays.index, arrays.positions, 0.0, g, p_null=1.0)
    assert torch.count_nonzero(nothing) == 0
    single = training_conditions(FACE_SLOTS, arrays.index, arrays.positions, 0.0, g, p_single=1.0)
    assert (single != 0).sum(1).tolist() == [1] * 64
    # independent dropout at 0.3 over 5 slots × 4096 images: kept share within ±2%
    _, big = generate("faces", 4096, seed=4, as_arrays=True)
    d = training_conditions(FACE_SLOTS, big.index, big.positions, 0.3, g)
    assert abs(float((d != 0).float().mean()) - 0.7) < 0.02


def test_training_conditions_bind_one_object():
    _, arrays = generate("scenes", 256, seed=1, split="two_objects", as_arrays=True)
    g = torch.Generator().manual_seed(0)
    c = training_conditions(SCENE_SLOTS, arrays.index, arrays.positions, 0.0, g)
    # every row describes one of its two objects: shape, colour and position all from the same one
    for i in range(256):
        k = [j for j in range(2) if abs(arrays.positions[i, j, 0] - float(c[i, 4])) < 1e-6]
        assert k, i
        j = k[0]
        assert int(c[i, 0]) == arrays.index["shape"][i, j] + 1
        assert int(c[i, 1]) == arrays.index["color"][i, j] + 1


def test_implicit_score_is_minus_eps_over_sigma_and_energy_is_seeded():
    torch.manual_seed(1)
    net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=SCENE_SLOTS))
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # make the prediction non-trivial
    m = ImplicitConceptModel(net, "t", "scenes", energy_sigmas=(0.05, 1.0, 3), energy_draws=2)
    x = torch.randn(4, 3, 32, 32)
    sigma = torch.tensor([0.05, 0.2, 0.7, 1.5])
    cond = m.encode([{"color": "red"}, {}, {"shape": "square"}, {"position": (0.5, 0.5)}])
    with torch.no_grad():
        torch.testing.assert_close(m.score(x, cond, sigma), -net(x, sigma, cond) / sigma[:, None, None, None], rtol=0, atol=0)
    e1 = m.energy(x, cond, None)
    assert e1.shape == (4,) and torch.isfinite(e1).all()
    torch.testing.assert_close(m.energy(x, cond, None), e1, rtol=0, atol=0)
    # common random numbers: an image's energy does not depend on the rest of its batch
    torch.testing.assert_close(m.energy(x[2:3], cond[2:3], None), e1[2:3], rtol=1e-5, atol=1e-3)
    with pytest.raises(ModelError, match="needs a noise level"):
        m.score(x, cond, None)
    with pytest.raises(ModelError, match="expected images"):
        m.energy(torch.zeros(4, 3, 16, 16), cond, None)


def test_explicit_score_is_minus_energy_gradient():
    torch.manual_seed(2)
    net = EnergyNet(EnergyNetConfig(widths=(8, 16), emb_dim=16, slots=SCENE_SLOTS, noise_conditional=False))
    m = ExplicitConceptModel(net, "e", "scenes")
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    net.double()
    cond = m.encode([{"color": "red"}, {}]).double()
    s = m.score(x, cond, None)
    # central finite difference along a random direction
    v = torch.randn_like(x)
    h = 1e-6
    fd = (m.energy(x + h * v, cond, None) - m.energy(x - h * v, cond, None)) / (2 * h)
    torch.testing.assert_close((-s * v).flatten(1).sum(1), fd, rtol=1e-5, atol=1e-7)


def test_guided_eps_is_prior_plus_w_times_difference_with_shared_prior_rows():
    torch.manual_seed(3)
    net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=SCENE_SLOTS))
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    m = ImplicitConceptModel(net, "g", "scenes", guidance=2.5)
    x1, x2 = torch.randn(2, 3, 32, 32).unbind(0)
    # chains x1, x2 under three leaves (red, prior, position): the layout the compiler batches
    x = torch.stack([x1, x2, x1, x2, x1, x2])
    sigma = torch.tensor([0.3, 0.7, 0.3, 0.7, 0.3, 0.7])
    cond = m.encode([{"color": "red"}] * 2 + [{}] * 2 + [{"position": (0.2, 0.4)}] * 2)
    with torch.no_grad():
        got = m.eps(x, cond, sigma)
        # forward rows: the 2 distinct (image, σ) rows once under the prior, the 4 conditioned rows
        assert m.forward_rows == 2 + 4
        plain = m.raw_eps(x, cond, sigma)
        assert m.forward_rows == 6 + 6
        prior = m.raw_eps(x, torch.zeros_like(cond), sigma)
    want = prior + 2.5 * (plain - prior)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[2:4], plain[2:4], rtol=1e-5, atol=1e-6)  # the prior itself is unchanged
    with torch.no_grad():
        e = m.energy(x, cond, None)
        m.guidance = 1.0
        e_c = m.energy(x, cond, None)
        e_0 = m.energy(x, torch.zeros_like(cond), None)
    torch.testing.assert_close(e, e_0 + 2.5 * (e_c - e_0), rtol=1e-5, atol=1e-3)
    with pytest.raises(ModelError, match="guidance must be"):
        ImplicitConceptModel(net, "g", "scenes", guidance=0.0)


def test_sampling_guidance_weights_the_scores_and_leaves_the_energies_at_guidance():
    torch.manual_seed(4)
    net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=SCENE_SLOTS))
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    m = ImplicitConceptModel(net, "g", "scenes", guidance=2.5, sampling_guidance=1.5)
    both = ImplicitConceptModel(net, "g", "scenes", guidance=2.5)
    x = torch.randn(2, 3, 32, 32)
    sigma = torch.tensor([0.3, 0.7])
    cond = m.encode([{"color": "red"}, {"shape": "square"}])
    with torch.no_grad():
        plain = m.raw_eps(x, cond, sigma)
        prior = m.raw_eps(x, torch.zeros_like(cond), sigma)
        torch.testing.assert_close(m.eps(x, cond, sigma), prior + 1.5 * (plain - prior), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(both.eps(x, cond, sigma), prior + 2.5 * (plain - prior), rtol=1e-5, atol=1e-6)
        assert torch.equal(m.energy(x, cond, None), both.energy(x, cond, None))  # energies keep w = 2.5
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ModelError, match="sampling_guidance must be"):
            ImplicitConceptModel(net, "g", "scenes", guidance=2.5, sampling_guidance=bad)


def _two_models():
    torch.manual_seed(4)
    color_slots = slots_for_domain(get_domain("scenes"), ("color",))
    nets = []
    for slots in (color_slots, SCENE_SLOTS):
        net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=slots))
        torch.nn.init.normal_(net.conv_out.weight, std=0.1)
        nets.append(net)
    factor = ImplicitConceptModel(nets[0], "colour", "scenes", energy_sigmas=(0.05, 1.0, 3), guidance=3.0)
    prior = ImplicitConceptModel(nets[1], "prior", "scenes", energy_sigmas=(0.05, 1.0, 3), guidance=5.0)
    return factor, prior


def test_sigma_range_hands_other_noise_levels_to_the_prior():
    factor, prior = _two_models()
    x = torch.randn(4, 3, 32, 32)
    sigma = torch.tensor([0.05, 0.2, 0.21, 1.5])
    cond = factor.encode([{"color": "red"}, {"color": "blue"}, {"color": "red"}, {}])
    with torch.no_grad():
        before = factor.eps(x, cond, sigma)
        factor.set_sigma_range(0.0, 0.2, prior)
        after = factor.eps(x, cond, sigma)
        prior_null = prior.raw_eps(x, prior.encode([{}] * 4), sigma)
    torch.testing.assert_close(after[:2], before[:2], rtol=1e-5, atol=1e-6)  # σ ≤ 0.2: unchanged (guided)
    torch.testing.assert_close(after[2:], prior_null[2:], rtol=1e-5, atol=1e-6)  # above: the prior, any condition
    torch.testing.assert_close(factor.score(x, cond, sigma), -after / sigma[:, None, None, None], rtol=1e-5, atol=1e-5)
    # energies: the levels outside the range (σ grid 0.05, 0.22, 1.0) are the prior's, with the same noise draws
    with torch.no_grad():
        lv = factor.energy_levels(x, cond)
        lv_prior = prior.energy_levels(x, prior.encode([{}] * 4))
        factor.sigma_range = None
        lv_free = factor.energy_levels(x, cond)
        factor.sigma_range = (0.0, 0.2)
        one = factor.energy(x, cond, sigma)  # one given level per row
        factor.sigma_range = None
        one_free = factor.energy(x, cond, sigma)
        one_prior = prior.energy(x, prior.encode([{}] * 4), sigma)
    torch.testing.assert_close(lv[:, 0], lv_free[:, 0])
    torch.testing.assert_close(lv[:, 1:], lv_prior[:, 1:])
    # the factor's network runs only at the one level inside the range (2 draws), not at all 3
    calls = []
    hook = factor.net.register_forward_hook(lambda *_: calls.append(1))
    factor.sigma_range = (0.0, 0.2)
    with torch.no_grad():
        again = factor.energy_levels(x, cond)
    hook.remove()
    assert len(calls) == 2 and torch.equal(again, lv)
    torch.testing.assert_close(one, torch.cat([one_free[:2], one_prior[2:]]))


def test_sigma_range_errors():
    factor, prior = _two_models()
    with pytest.raises(ModelError, match="0 <= lo < hi"):
        factor.set_sigma_range(0.3, 0.2, prior)
    with pytest.raises(ModelError, match="implicit prior model"):
        factor.set_sigma_range(0.0, 0.2, "prior")
    other = ImplicitConceptModel(prior.net, "p2", "scenes", energy_sigmas=(0.05, 1.0, 4))
    with pytest.raises(ModelError, match="same energy noise levels"):
        factor.set_sigma_range(0.0, 0.2, other)


def test_spatial_maps_put_a_bump_at_the_conditioned_place():
    net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=SCENE_SLOTS,
                          spatial=("position",), spatial_width=0.05))
    assert net.conv_in.in_channels == 4  # RGB + one position map
    cond = encode_conditions(SCENE_SLOTS, [{"position": (0.3, 0.7)}, {"shape": "circle"}, {"position": (0.9, 0.1)}])
    maps = net.spatial_maps(cond, 32)
    assert maps.shape == (3, 1, 32, 32)
    # (x, y) from the top-left: x picks the column, y the row; pixel centres are (j + 0.5) / 32
    assert divmod(int(maps[0, 0].argmax()), 32) == (22, 9)  # row 0.7·32 − 0.5 ≈ 21.9, column 0.3·32 − 0.5 ≈ 9.1
    assert divmod(int(maps[2, 0].argmax()), 32) == (3, 28)  # row 0.1·32 − 0.5 = 2.7, column 28.3
    assert float(maps[1].abs().max()) == 0.0  # a null position slot gives an empty map
    # value at a pixel is exp(−d² / (2w²)) with d its distance from the point
    d2 = ((9 + 0.5) / 32 - 0.3) ** 2 + ((22 + 0.5) / 32 - 0.7) ** 2
    assert float(maps[0, 0, 22, 9]) == pytest.approx(float(torch.exp(torch.tensor(-d2 / (2 * 0.05**2)))), rel=1e-6)


def test_spatial_config_round_trips_and_rejects_discrete_families():
    cfg = UNetConfig(widths=(8, 16), slots=SCENE_SLOTS, spatial=("position",))
    back = UNetConfig.from_json(cfg.to_json())
    assert back == cfg and back.spatial == ("position",)
    with pytest.raises(ValueError, match="must be continuous"):
        UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, slots=SCENE_SLOTS, spatial=("shape",)))
    with pytest.raises(ValueError, match="is not a condition slot"):
        UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, slots=SCENE_SLOTS, spatial=("hair",)))


def test_absent_token_is_reachable_only_through_the_sentinel():
    from conceptlang.models.conditions import ABSENT, has_absent_token

    c = encode_conditions(FACE_SLOTS, [{"male": ABSENT}, {"male": "male"}])
    assert c[:, 1].tolist() == [2.0, 1.0]  # male slot: token 1 = male, 2 = <none>
    assert has_absent_token(FACE_SLOTS, "male") and not has_absent_token(FACE_SLOTS, "hair")
    with pytest.raises(ModelError, match="no known-absent token"):
        encode_conditions(FACE_SLOTS, [{"hair": ABSENT}])


def test_guidance_interval_guides_inside_and_samples_the_plain_conditional_outside():
    torch.manual_seed(3)
    net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=SCENE_SLOTS))
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    m = ImplicitConceptModel(net, "g", "scenes", guidance=2.5, guidance_interval=(0.5, 1.0))
    x = torch.randn(4, 3, 32, 32)
    sigma = torch.tensor([0.3, 0.7, 1.0, 2.0])  # outside, inside, inside (bound), outside
    cond = m.encode([{"color": "red"}] * 4)
    rows = []
    raw = m.raw_eps

    def counting(x_, c_, s_):
        rows.append(x_.shape[0])
        return raw(x_, c_, s_)

    with torch.no_grad():
        m.raw_eps = counting
        got = m.eps(x, cond, sigma)
        del m.raw_eps
        plain = m.raw_eps(x, cond, sigma)
        prior = m.raw_eps(x, torch.zeros_like(cond), sigma)
    torch.testing.assert_close(got[[0, 3]], plain[[0, 3]], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[[1, 2]], (prior + 2.5 * (plain - prior))[[1, 2]], rtol=1e-5, atol=1e-6)
    assert sorted(rows) == [2, 4]  # outside: one conditional pass (2 rows); inside: prior + conditional
    with torch.no_grad():  # energies keep the guidance at every level (the readouts were fitted on them)
        e = m.energy(x, cond, None)
        m.guidance_interval = None
        assert torch.equal(e, m.energy(x, cond, None))
    with pytest.raises(ModelError, match="guidance interval must have 0 <= lo < hi"):
        ImplicitConceptModel(net, "g", "scenes", guidance=2.5, guidance_interval=(1.0, 0.5))


def test_prior_below_samples_the_models_own_prior_at_low_noise_and_leaves_energies_alone():
    torch.manual_seed(4)
    net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=SCENE_SLOTS))
    with torch.no_grad():  # every layer random, so that the condition changes the prediction
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    m = ImplicitConceptModel(net, "p", "scenes", guidance=2.5, prior_below=0.02)
    x = torch.randn(4, 3, 32, 32)
    sigma = torch.tensor([0.01, 0.0199, 0.02, 0.5])  # below, below, at the bound (conditioned), above
    cond = m.encode([{"color": "red"}, {"shape": "circle", "size": "large"}, {"color": "red"}, {"color": "blue"}])
    with torch.no_grad():
        got = m.eps(x, cond, sigma)
        prior = m.raw_eps(x, torch.zeros_like(cond), sigma)
        plain = m.raw_eps(x, cond, sigma)
        e = m.energy(x, cond, None)
    torch.testing.assert_close(got[:2], prior[:2], rtol=1e-4, atol=1e-4)  # batches of 2 and 4 rows round differently
    torch.testing.assert_close(got[2:], (prior + 2.5 * (plain - prior))[2:], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got[2:], prior[2:], atol=1e-3)  # the conditions do act at and above the bound
    m.prior_below = None
    with torch.no_grad():
        assert torch.equal(e, m.energy(x, cond, None))  # energies (inference) never use it
        torch.testing.assert_close(m.eps(x, cond, sigma)[:2], (prior + 2.5 * (plain - prior))[:2], rtol=1e-4, atol=1e-4)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ModelError, match="prior_below must be a finite noise level >= 0"):
            ImplicitConceptModel(net, "p", "scenes", prior_below=bad)


def test_prior_keeps_samples_the_kept_families_condition_alone_at_low_noise():
    torch.manual_seed(4)
    net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=SCENE_SLOTS))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    m = ImplicitConceptModel(net, "p", "scenes", guidance=2.5, prior_below=0.02, prior_keeps=("color",))
    assert m.prior_keeps == ("color",)
    x = torch.randn(3, 3, 32, 32)
    sigma = torch.tensor([0.01, 0.01, 0.5])
    cond = m.encode([{"shape": "circle", "color": "red", "size": "large"}, {"shape": "square"}, {"color": "blue"}])
    only_colour = m.encode([{"color": "red"}, {}, {"color": "blue"}])
    with torch.no_grad():
        got = m.eps(x, cond, sigma)
        kept = m.raw_eps(x, only_colour, sigma)
        prior = m.raw_eps(x, torch.zeros_like(cond), sigma)
        plain = m.raw_eps(x, cond, sigma)
    # below the level: the plain conditional on the colour alone (a row without one: the prior)
    torch.testing.assert_close(got[:2], kept[:2], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[1], prior[1], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got[0], prior[0], atol=1e-3)
    torch.testing.assert_close(got[2], (prior + 2.5 * (plain - prior))[2], rtol=1e-4, atol=1e-4)  # above: guided
    with pytest.raises(ModelError, match="prior_keeps must name distinct families of the model"):
        ImplicitConceptModel(net, "p", "scenes", prior_below=0.02, prior_keeps=("hue",))
    with pytest.raises(ModelError, match="prior_keeps must name distinct families"):
        ImplicitConceptModel(net, "p", "scenes", prior_below=0.02, prior_keeps=("color", "color"))
    with pytest.raises(ModelError, match="prior_keeps needs prior_below"):
        ImplicitConceptModel(net, "p", "scenes", prior_keeps=("color",))


@pytest.mark.gpu
def test_cuda_sampling_path_in_bf16_channels_last_is_close_to_float32(monkeypatch):
    from conceptlang.models import concept_model

    monkeypatch.setattr(concept_model, "CUDA_BF16", True)
    monkeypatch.setattr(concept_model, "CUDA_CHANNELS_LAST", True)
    torch.manual_seed(5)
    net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=SCENE_SLOTS))
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    m = ImplicitConceptModel(net.cuda(), "g", "scenes", guidance=2.0)
    x = torch.randn(8, 3, 32, 32, device="cuda")
    cond = m.encode([{"color": "red"}] * 8).cuda()
    sigma = torch.tensor([0.01, 0.1, 1.0, 10.0] * 2, device="cuda")
    with torch.no_grad():
        exact = m.raw_eps(x, cond, sigma)  # float32 outside inference mode
    with torch.inference_mode():
        fast = m.raw_eps(x, cond, sigma)
    assert fast.dtype == torch.float32 and fast.is_contiguous()
    assert m.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    # bf16 keeps 8 bits of mantissa: the body's output is within ~1% of float32
    assert float((fast - exact).abs().max() / exact.abs().max()) < 0.02


@pytest.mark.gpu
def test_cuda_sampling_path_is_float32_contiguous_by_default(monkeypatch):
    from conceptlang.models import concept_model

    assert not concept_model.CUDA_BF16 and not concept_model.CUDA_CHANNELS_LAST
    torch.manual_seed(6)
    net = UNet(UNetConfig(widths=(8, 16), emb_dim=16, groups=4, attention=False, slots=SCENE_SLOTS))
    m = ImplicitConceptModel(net.cuda(), "g", "scenes", guidance=2.0)
    x = torch.randn(8, 3, 32, 32, device="cuda")
    cond = m.encode([{"color": "red"}] * 8).cuda()
    sigma = torch.tensor([0.01, 0.1, 1.0, 10.0] * 2, device="cuda")
    monkeypatch.setattr(concept_model, "CUDA_CHANNELS_LAST", True)
    with torch.inference_mode():
        m.raw_eps(x, cond, sigma)  # channels-last, then back to the default layout
    assert m.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(concept_model, "CUDA_CHANNELS_LAST", False)
    with torch.inference_mode():
        plain = m.raw_eps(x, cond, sigma)
    with torch.no_grad():
        exact = m.raw_eps(x, cond, sigma)
    assert m.net.conv_in.weight.is_contiguous() and not m.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert float((plain - exact).abs().max()) <= 1e-6 * float(exact.abs().max())  # float32 on the same layout
