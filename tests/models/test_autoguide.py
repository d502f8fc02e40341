"""Autoguidance: a smaller network of the same conditions guides a model's sampling (manifest ``autoguide``)."""

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from conceptlang.cli import main as cli_main
from conceptlang.data import get_domain
from conceptlang.errors import ModelError
from conceptlang.models.concept_model import ImplicitConceptModel
from conceptlang.models.conditions import slots_for_domain
from conceptlang.models.networks import UNet, UNetConfig
from conceptlang.models.registry import load_registry, verify_weights

from .conftest import tiny_config

SCENE_SLOTS = slots_for_domain(get_domain("scenes"))
FACE_SLOTS = slots_for_domain(get_domain("faces"))


def _net(widths, slots=SCENE_SLOTS, seed=0):
    torch.manual_seed(seed)
    net = UNet(UNetConfig(widths=widths, emb_dim=16, groups=4, attention=False, slots=slots))
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # a zero-initialised output layer predicts nothing
    return net.eval()


def _inputs(m, n=6):
    torch.manual_seed(1)
    x = torch.randn(n, 3, 32, 32)
    cond = m.encode([{"color": "red"}, {}, {"shape": "circle", "size": "large"}] * (n // 3))
    sigma = torch.tensor([0.05, 0.5, 5.0] * (n // 3))
    return x, cond, sigma


def test_autoguided_prediction_is_guide_plus_weight_times_difference():
    m = ImplicitConceptModel(_net((8, 16)), "m", "scenes", guidance=3.0)
    guide = _net((4, 8), seed=2)
    m.set_autoguide(guide, 2.5)
    x, cond, sigma = _inputs(m)
    with torch.no_grad():
        eps = m.net(x, sigma, cond)
        weak = guide(x, sigma, cond)
        m.forward_rows = 0
        out = m.eps(x, cond, sigma)
    # every row, the prior's ({}) included, and no classifier-free guidance on top
    torch.testing.assert_close(out, weak + 2.5 * (eps - weak), rtol=0, atol=1e-6)
    assert m.forward_rows == 2 * x.shape[0]  # the model's pass and the guide's, per row
    m.set_autoguide(guide, 1.0)  # w = 1 is the plain conditional model
    with torch.no_grad():
        torch.testing.assert_close(m.eps(x, cond, sigma), eps, rtol=0, atol=1e-6)


def test_outside_its_interval_the_model_keeps_classifier_free_guidance():
    plain = ImplicitConceptModel(_net((8, 16)), "m", "scenes", guidance=3.0)
    m = ImplicitConceptModel(_net((8, 16)), "m", "scenes", guidance=3.0)
    guide = _net((4, 8), seed=2)
    m.set_autoguide(guide, 2.0, interval=(0.0, 1.0))
    x, cond, sigma = _inputs(m)
    with torch.no_grad():
        out = m.eps(x, cond, sigma)
        cfg = plain.eps(x, cond, sigma)
        eps = m.net(x, sigma, cond)
        weak = guide(x, sigma, cond)
    inside = sigma <= 1.0
    torch.testing.assert_close(out[inside], (weak + 2.0 * (eps - weak))[inside], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[~inside], cfg[~inside], rtol=0, atol=1e-6)
    assert not torch.allclose(cfg[inside], out[inside])


def test_energies_do_not_use_the_guide():
    m = ImplicitConceptModel(_net((8, 16)), "m", "scenes", guidance=3.0)
    x, cond, _ = _inputs(m)
    with torch.no_grad():
        before = m.energy(x, cond, None)
        m.set_autoguide(_net((4, 8), seed=2), 2.0)
        assert torch.equal(before, m.energy(x, cond, None))


def test_set_autoguide_refuses_a_guide_of_other_conditions_and_bad_settings():
    m = ImplicitConceptModel(_net((8, 16)), "m", "scenes")
    with pytest.raises(ModelError, match="must take the model's conditions"):
        m.set_autoguide(_net((4, 8), slots=FACE_SLOTS), 2.0)
    for w in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ModelError, match="autoguide weight must be a finite number > 0"):
            m.set_autoguide(_net((4, 8)), w)
    with pytest.raises(ModelError, match="autoguide interval must have 0 <= lo < hi"):
        m.set_autoguide(_net((4, 8)), 2.0, interval=(1.0, 0.5))
    assert m.guide is None


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory):
    from conceptlang.models.training import Trainer

    root = tmp_path_factory.mktemp("guide")
    net = {"widths": [4, 8], "emb_dim": 16, "groups": 4, "attention": False}  # a quarter of the model's widths
    Trainer(tiny_config(iters=2, net=net), root / "run").train(progress=False)
    return root / "run"


def _manifest(models):
    return json.loads((models / "manifest.json").read_text())


def test_export_guide_round_trip(tiny_models_dir, guide_run, tmp_path):
    from conceptlang.models.export import export_guide, export_run

    models = tmp_path / "m"
    shutil.copytree(tiny_models_dir, models)
    entry = export_guide(guide_run, models, "tiny", 2.0, interval=(0.0, 2.0))
    spec = entry["autoguide"]
    assert spec["file"] == "tiny-guide.safetensors" and spec["weight"] == 2.0 and spec["interval"] == [0.0, 2.0]
    assert spec["architecture"]["config"]["widths"] == [4, 8] and spec["training"]["iterations"] == 2
    reg = load_registry(models)
    model = reg.loaded(reg.entries[0], torch.device("cpu"))
    assert model.guide is not None and model.guide_weight == 2.0 and model.guide_interval == (0.0, 2.0)
    assert verify_weights(reg.entries[0], models) == "ok"
    guide_bytes = (models / "tiny-guide.safetensors").stat().st_size
    assert reg.describe()[0]["autoguide"] == {"file": "tiny-guide.safetensors", "sha256": spec["sha256"], "weight": 2.0,
                                              "interval": [0.0, 2.0], "bytes": guide_bytes}
    out = CliRunner().invoke(cli_main, ["models", "--models", str(models)])
    assert out.exit_code == 0, out.output
    assert f"autoguidance: guide tiny-guide.safetensors ({guide_bytes / 1e6:.1f} MB), weight 2 at σ in [0, 2]" in out.output
    # exporting the model again keeps its guide (a sampling setting, like the guidance interval)
    assert export_run(tiny_models_dir.parent / "run", models)["autoguide"] == spec
    # a corrupted guide file is refused when loading and reported by verification
    path = models / "tiny-guide.safetensors"
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    reg = load_registry(models)
    assert verify_weights(reg.entries[0], models) == "mismatch"
    with pytest.raises(ModelError, match=r"model 'tiny \(autoguide\)': checksum mismatch"):
        reg.loaded(reg.entries[0], torch.device("cpu"))
    path.unlink()
    assert verify_weights(reg.entries[0], models) == "missing"


def test_export_guide_refuses_a_run_of_other_conditions_and_writes_nothing(tiny_models_dir, tmp_path):
    from conceptlang.models.export import export_guide
    from conceptlang.models.training import Trainer

    models = tmp_path / "m"
    shutil.copytree(tiny_models_dir, models)
    before = (models / "manifest.json").read_bytes()
    Trainer(tiny_config(iters=1, domain="faces", name="f"), tmp_path / "faces").train(progress=False)
    with pytest.raises(ModelError, match="cannot guide model 'tiny': its network's slots differs"):
        export_guide(tmp_path / "faces", models, "tiny", 2.0)
    with pytest.raises(ModelError, match="no model 'nope'"):
        export_guide(tmp_path / "faces", models, "nope", 2.0)
    with pytest.raises(ModelError, match="autoguide weight must be a finite number > 0"):
        export_guide(tmp_path / "faces", models, "tiny", 0.0)
    with pytest.raises(ModelError, match="autoguide interval must have 0 <= lo < hi"):
        export_guide(tmp_path / "faces", models, "tiny", 2.0, interval=(1.0, 1.0))
    assert not (models / "tiny-guide.safetensors").exists()
    assert (models / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("change, message", [
    (lambda g: g.pop("weight"), "'weight' must be a number > 0, got None"),
    (lambda g: g.update(weight=0), "'weight' must be a number > 0, got 0"),
    (lambda g: g.update(interval=[2.0, 1.0]), r"'interval' must be \[lo, hi\] with 0 <= lo < hi"),
    (lambda g: g["architecture"]["config"].update(image_size=16, widths=[4]), "'image_size' must equal the model's"),
    (lambda g: g["architecture"].update({"class": "EnergyNet"}), "architecture.class must be one of PixelNet, UNet"),
    (lambda g: g.update(file="tiny.safetensors"), "must be the guide's own weights file"),
    (lambda g: g.update(sha256="abc"), "'sha256' must be 64 lowercase hex digits"),
])
def test_manifest_validation_names_the_autoguide_field(tiny_models_dir, guide_run, tmp_path, change, message):
    from conceptlang.models.export import export_guide

    models = tmp_path / "m"
    shutil.copytree(tiny_models_dir, models)
    export_guide(guide_run, models, "tiny", 2.0)
    data = _manifest(models)
    change(data["models"][0]["autoguide"])
    (models / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message) as err:
        load_registry(models)
    assert "model 'tiny', autoguide" in str(err.value)


def test_the_rows_budget_counts_the_guides_passes(tiny_models_dir, guide_run, tmp_path):
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.models.export import export_guide
    from conceptlang.sampling import sample
    from conceptlang.sampling.api import rows_bound, rows_per_evaluation

    models = tmp_path / "m"
    shutil.copytree(tiny_models_dir, models)
    settings = {"sampler": "dpmpp_2m", "steps": 13, "max_nfe": 12, "sigma_max": 10.0, "sigma_min": 0.01}
    plain = compile_expr("red", load_registry(models), alpha=0.5)
    export_guide(guide_run, models, "tiny", 2.0)
    guided = compile_expr("red", load_registry(models), alpha=0.5)
    assert rows_bound(guided) == 2 * rows_bound(plain) == 4  # an upper bound: the leaf and a null row, each twice
    counted = rows_per_evaluation(guided, settings, torch.device("cpu"))
    # the tiny model has guidance 1 (no null row): one leaf, the model's pass and the guide's
    assert (rows_per_evaluation(plain, settings, torch.device("cpu")), counted) == (1, 2)
    res = sample(guided, 2, seed=0, device="cpu", **settings)
    assert (res.settings["steps"], res.settings["nfe"]) == (12 // counted, 12)
