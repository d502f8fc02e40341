"""Inference on the analytic Gaussian registry: the minimiser of each energy is known in closed form."""

import pytest
import torch

from conceptlang.inference.inference import infer, infer_batch
from conceptlang.models import analytic  # noqa: E402


def _point(x, y):
    return torch.tensor([x, y], dtype=torch.float32).view(1, 2, 1, 1)  # (1, C=2, H=1, W=1)


@pytest.mark.parametrize("kind", ["explicit", "noise_conditional", "implicit"])
@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("colour", ["red", "green", "blue"])
def test_colour_at_its_mean_is_inferred(kind, joint, colour):
    reg = analytic.GaussianRegistry(kind=kind, joint=joint)
    g = analytic.GAUSS_CONCEPTS["color"][colour]
    res = infer(_point(*g.mean), reg, domain="gauss", families=["color"])
    assert res.families["color"].value == colour
    assert res.labels[colour] and res.labels[f"color.{colour}"]


def test_explicit_energies_are_the_closed_form():
    reg = analytic.GaussianRegistry(kind="explicit")
    x = (0.1, 0.3)
    res = infer(_point(*x), reg, domain="gauss", families=["shape"])
    for value, e in res.families["shape"].ranking:
        g = analytic.GAUSS_CONCEPTS["shape"][value]
        exact = ((x[0] - g.mean[0]) ** 2 + (x[1] - g.mean[1]) ** 2) / (2 * g.scale**2)
        assert e == pytest.approx(exact, rel=1e-5)


@pytest.mark.parametrize("kind,tol", [("explicit", 0.01), ("noise_conditional", 0.01), ("implicit", 0.03)])
def test_position_minimiser_is_recovered(kind, tol):
    # position(x, y) is N((2x − 1, 2y − 1), 0.1²): the point (0.3, −0.4) is best explained by (0.65, 0.3).
    # The implicit energy is a denoising loss over 12 fixed noise draws, whose minimiser sits a
    # little off the mean (by the draws' average), hence its wider tolerance.
    reg = analytic.GaussianRegistry(kind=kind)
    res = infer(_point(0.3, -0.4), reg, domain="gauss", families=["position"])
    px, py = res.families["position"].value
    assert px == pytest.approx(0.65, abs=tol) and py == pytest.approx(0.3, abs=tol)


def test_domain_is_found_through_the_registry():
    reg = analytic.GaussianRegistry()
    res = infer_batch(_point(0.5, 0.0), reg, families=["color"])[0]
    assert res.domain == "gauss" and res.families["color"].value == "green"


def test_implicit_energy_of_a_row_does_not_depend_on_its_batch():
    # Inference stacks many (image, condition) rows into one call; that is exact only when every
    # row sees the same noise draws, as in the shipped implicit models.
    model = analytic.GaussianRegistry(kind="implicit").prior_model
    x = torch.tensor([[0.3, -0.4], [0.1, 0.2], [-0.5, 0.0]]).view(3, 2, 1, 1)
    cond = model.encode([{"color": "red"}, {"shape": "circle"}, {}])
    together = model.energy(x, cond, None)
    alone = torch.cat([model.energy(x[i:i + 1], cond[i:i + 1], None) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=0, atol=0)
