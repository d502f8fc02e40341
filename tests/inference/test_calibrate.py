"""Calibrated inference readouts: per-level energies, the fit, the manifest, and inference using them."""

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conceptlang.errors import ModelError
from conceptlang.inference.calibrate import calibrate_and_store, fit_levels
from conceptlang.inference.inference import Readout, infer_batch
from conceptlang.models.registry import load_registry


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A folder with a tiny trained scenes run (2 iterations, joint over every family) and its export in models/."""
    from conceptlang.models.export import export_run
    from conceptlang.models.training import Trainer
    from tests.models.conftest import tiny_config

    root = tmp_path_factory.mktemp("tiny_cal")
    Trainer(tiny_config(iters=2), root / "run").train(progress=False)
    export_run(root / "run", root / "models", sampler={"sampler": "annealed", "step_size": 1e-5, "n_sigmas": 4})
    return root


@pytest.fixture
def models(tiny_dir, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(tiny_dir / "models", dst)
    return dst


def _images(n=4, seed=5):
    from conceptlang.data import generate

    images, _ = generate("scenes", n, seed=seed, split="train")
    return images


@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_level_energies_sum_to_the_energy(models, guidance):
    reg = load_registry(models)
    model = reg.prior("scenes")[0]
    impl = model.impl()
    impl.guidance = guidance
    x = torch.as_tensor(np.stack([np.transpose(im, (2, 0, 1)) for im in _images(3)]), dtype=torch.float32) / 127.5 - 1
    cond = torch.cat([model.encode([{"shape": "circle"}]), model.encode([{}]), model.encode([{"size": "large"}])])
    lv = model.energy_levels(x, cond)
    assert lv.shape == (3, impl.energy_sigmas.shape[0])
    torch.testing.assert_close(lv.sum(1), model.energy(x, cond, None), rtol=1e-5, atol=1e-6)
    # every level is a mean squared error times span / levels: positive
    assert (lv > 0).all()


def test_fit_levels_finds_the_informative_level():
    rng = np.random.default_rng(0)
    n, j = 600, 3
    y = rng.integers(0, j, n)
    lv = np.zeros((n, j, 3))
    lv[:, :, 0] = -2.0 * np.eye(j)[y] + rng.normal(0, 1.0, (n, j))  # informative, small spread
    lv[:, :, 1] = rng.normal(0, 20.0, (n, j))  # pure noise with a large spread: swamps the plain sum
    lv[:, :, 2] = 7.0  # constant across conditions: no information
    fit, test = slice(0, 400), slice(400, n)
    plain = ((lv[test].sum(2)).argmin(1) == y[test]).mean()
    w, b = fit_levels(lv[fit], y[fit], l2=1e-3)
    calibrated = ((lv[test] @ w + b).argmin(1) == y[test]).mean()
    assert plain < 0.45  # chance is 1/3
    assert calibrated > 0.75  # the informative level alone: P(−2 + N(0,1) is the lowest of three) ≈ 0.8
    assert abs(w[1]) < 0.05 * abs(w[0])
    # a huge penalty keeps the plain energy (w = 1, b = 0)
    w, b = fit_levels(lv[fit], y[fit], l2=1e8)
    np.testing.assert_allclose(w[:2], 1.0, atol=1e-3)
    np.testing.assert_allclose(b, 0.0, atol=1e-3)


def test_fit_levels_rejects_bad_shapes():
    with pytest.raises(ModelError, match="need \\(N, J, S\\) energies"):
        fit_levels(np.zeros((4, 2)), np.zeros(4, dtype=int))


def test_readout_json_round_trip_and_validation():
    r = Readout(np.array([1.0, 0.5]), np.array([0.0, -1.0]), (0.1, 1.0), ("a", "b"))
    back = Readout.from_json(json.loads(json.dumps(r.to_json())), "here")
    assert back.to_json() == r.to_json()
    with pytest.raises(ModelError, match="here: malformed calibrated readout"):
        Readout.from_json({"weights": [1.0]}, "here")
    with pytest.raises(ModelError, match="malformed calibrated readout \\(weights \\(2,\\), bias \\(3,\\)"):
        Readout.from_json({**r.to_json(), "bias": [0, 0, 0]}, "here")


def _store_readout(models, family, weights, bias, conditions, sigmas=None):
    path = models / "manifest.json"
    data = json.loads(path.read_text())
    entry = data["models"][0]
    grid = sigmas if sigmas is not None else [float(v) for v in load_registry(models).prior("scenes")[0].impl().energy_sigmas]
    entry.setdefault("inference", {}).setdefault("readout", {})[family] = {
        "weights": weights, "bias": bias, "sigmas": grid, "conditions": conditions}
    path.write_text(json.dumps(data))


def test_inference_ranks_by_a_stored_readout(models):
    images = _images(4)
    plain = infer_batch(images, load_registry(models), "scenes", families=["size"])
    assert all(r.families["size"].readout == "energy" for r in plain)
    s = len(load_registry(models).prior("scenes")[0].impl().energy_sigmas)
    for bias, want in (([5.0, 0.0], "large"), ([0.0, 5.0], "small")):
        _store_readout(models, "size", [0.0] * s, bias, ["small", "large"])
        got = infer_batch(images, load_registry(models), "scenes", families=["size"])
        for r, p in zip(got, plain):
            fam = r.families["size"]
            assert fam.value == want and fam.readout == "calibrated"
            assert fam.ranking == [(want, 0.0), ({"large": "small", "small": "large"}[want], 5.0)]
            # the reported energy is the plain energy of the inferred value
            assert fam.energy == pytest.approx(dict(p.families["size"].ranking)[want], rel=1e-5)
            assert fam.to_json()["ranking"][1] == {"value": fam.ranking[1][0], "score": 5.0}
            assert "calibrated scores:" in r.format()
    # a unit readout is the plain energy again
    _store_readout(models, "size", [1.0] * s, [0.0, 0.0], ["small", "large"])
    got = infer_batch(images, load_registry(models), "scenes", families=["size"])
    assert [r.families["size"].value for r in got] == [r.families["size"].value for r in plain]


def test_a_stale_readout_is_a_clear_error(models):
    s = len(load_registry(models).prior("scenes")[0].impl().energy_sigmas)
    _store_readout(models, "size", [1.0] * s, [0.0, 0.0], ["small", "large"], sigmas=[0.5] * s)
    with pytest.raises(ModelError, match="calibrated on σ levels .*; recalibrate"):
        infer_batch(_images(1), load_registry(models), "scenes", families=["size"])
    _store_readout(models, "size", [1.0] * s, [0.0, 0.0], ["large", "small"])
    with pytest.raises(ModelError, match="covers \\['large', 'small'\\], the family has \\['small', 'large'\\]"):
        infer_batch(_images(1), load_registry(models), "scenes", families=["size"])


def test_calibrate_and_store_writes_every_discrete_family(models, tiny_dir):
    cals = calibrate_and_store(models, "scenes", n=6, seed=3)
    assert [c.family for c in cals] == ["shape", "color", "size"]
    for c in cals:
        assert c.n == 6 and c.energy_heldout.trials == 2 and c.calibrated_heldout.trials == 2  # the last third
        assert c.readout.conditions == tuple(load_registry(models).domain("scenes").family(c.family).values)
    entry = json.loads((models / "manifest.json").read_text())["models"][0]
    assert set(entry["inference"]["readout"]) == {"shape", "color", "size"}
    assert entry["inference"]["calibration"]["n"] == 6 and entry["inference"]["calibration"]["seed"] == 3
    got = infer_batch(_images(2), load_registry(models), "scenes", families=["shape", "color", "size"])
    assert all(f.readout == "calibrated" for r in got for f in r.families.values())
    # re-exporting weights drops the readout (it belongs to the old weights) unless asked to keep it
    from conceptlang.models.export import export_run

    readout = entry["inference"]
    before = (models / "manifest.json").read_bytes()
    with pytest.raises(ValueError, match=r"keep names \['guidance_interval'\]"):
        export_run(tiny_dir / "run", models, keep=("inference", "guidance_interval"))
    assert (models / "manifest.json").read_bytes() == before  # refused before anything was written
    kept = export_run(tiny_dir / "run", models, keep=("inference", "concept_weights"))
    assert kept["inference"] == readout and "concept_weights" not in kept  # the entry had none to keep
    export_run(tiny_dir / "run", models)
    entry = json.loads((models / "manifest.json").read_text())["models"][0]
    assert "inference" not in entry


def test_calibrate_cli(models):
    from conceptlang.cli import main

    res = CliRunner().invoke(main, ["calibrate", "scenes", "--models", str(models), "-n", "6", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "| size | tiny |" in res.output and "readouts written to" in res.output
    res = CliRunner().invoke(main, ["calibrate", "scenes", "--models", str(models), "-n", "2"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["calibrate", "nope", "--models", str(models), "-n", "6"])
    assert res.exit_code == 1 and "nope" in res.output and "Traceback" not in res.output


def test_a_readout_for_a_yes_no_family_without_a_known_absent_token_is_refused():
    from types import SimpleNamespace

    from conceptlang.inference.inference import _readout

    class Model:
        name, has_energy_levels = "m", True

        def readout(self, family):
            return {"weights": [1.0], "bias": [0.0], "sigmas": [0.1], "conditions": ["glow"]}

    fam = SimpleNamespace(name="glow", values=("glow",))
    with pytest.raises(ModelError, match="needs two or more conditions to rank"):
        _readout({1: (Model(), [0], [{}])}, fam, absent=False)
    assert _readout({1: (Model(), [0], [{}]), 2: (Model(), [1], [{}])}, fam, absent=False) is None  # two models


def _set_energy(models, **settings):
    path = models / "manifest.json"
    data = json.loads(path.read_text())
    data["models"][0]["energy"].update(settings)
    path.write_text(json.dumps(data))


def _x(n=3):
    return torch.as_tensor(np.stack([np.transpose(im, (2, 0, 1)) for im in _images(n)]), dtype=torch.float32) / 127.5 - 1


def test_energy_levels_with_more_draws_are_the_energy_of_a_model_drawing_that_many(models):
    model = load_registry(models).prior("scenes")[0]
    x = _x()
    cond = torch.cat([model.encode([{"shape": "circle"}]), model.encode([{}]), model.encode([{"size": "large"}])])
    more = model.energy_levels(x, cond, 6)
    assert model.impl().energy_draws == 2 and not torch.equal(more, model.energy_levels(x, cond))
    _set_energy(models, draws=6)
    torch.testing.assert_close(more.sum(1), load_registry(models).prior("scenes")[0].energy(x, cond, None), rtol=0, atol=0)
    with pytest.raises(ModelError, match="draws per noise level must be ≥ 1, got 0"):
        model.energy_levels(x, cond, 0)


def test_inference_ranks_discrete_families_with_the_manifests_inference_draws(models):
    images = _images(4)
    assert load_registry(models).prior("scenes")[0].inference_draws == 2  # default: the energy's own draws
    plain = infer_batch(images, load_registry(models), "scenes", families=["shape", "size"])
    five = infer_batch(images, load_registry(models), "scenes", families=["shape", "size"], draws=5)
    _set_energy(models, inference_draws=5)
    reg = load_registry(models)
    assert reg.prior("scenes")[0].inference_draws == 5
    stored = infer_batch(images, reg, "scenes", families=["shape", "size"])
    for a, b in zip(five, stored):
        assert a.families["shape"].ranking == b.families["shape"].ranking
        assert a.families["size"].ranking == b.families["size"].ranking
    assert [r.families["shape"].ranking for r in plain] != [r.families["shape"].ranking for r in five]
    # an explicit draws overrides the manifest; 2 is the plain energy again
    again = infer_batch(images, reg, "scenes", families=["shape", "size"], draws=2)
    assert [r.families["shape"].ranking for r in again] == [r.families["shape"].ranking for r in plain]
    from conceptlang.errors import DataError

    with pytest.raises(DataError, match="draws must be an integer ≥ 1, got 0"):
        infer_batch(images, reg, "scenes", families=["shape"], draws=0)


@pytest.mark.parametrize("settings, message", [
    ({"inference_draws": 0}, "energy.inference_draws must be an integer ≥ 1, got 0"),
    ({"draws": 1.5}, "energy.draws must be an integer ≥ 1, got 1.5"),
    ({"seed": -1}, "energy.seed must be an integer ≥ 0, got -1"),
    ({"sigma_min": 3.0}, "energy.sigma_min must be below energy.sigma_max"),
    ({"sigma_max": float("inf")}, "energy.sigma_max must be a finite number > 0"),
])
def test_bad_energy_settings_are_refused_when_the_manifest_is_read(models, settings, message):
    _set_energy(models, **settings)
    with pytest.raises(ModelError, match=message):
        load_registry(models)


def test_calibration_records_its_draws_and_infer_cli_takes_draws(models, tmp_path):
    cals = calibrate_and_store(models, "scenes", n=6, seed=3, draws=3)
    assert {c.draws for c in cals} == {3}
    assert json.loads((models / "manifest.json").read_text())["models"][0]["inference"]["calibration"]["draws"] == 3
    from PIL import Image

    from conceptlang.cli import main

    png = tmp_path / "scene.png"
    Image.fromarray(_images(1)[0]).save(png)
    res = CliRunner().invoke(main, ["infer", str(png), "--models", str(models), "--draws", "3", "--json", "--threads", "1"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    want = infer_batch(_images(1), load_registry(models), "scenes", draws=3)[0].to_json()
    assert got["families"]["shape"] == want["families"]["shape"]
    res = CliRunner().invoke(main, ["infer", str(png), "--models", str(models), "--draws", "0"])
    assert res.exit_code == 2 and "Traceback" not in res.output and "--draws" in res.output
