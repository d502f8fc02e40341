import copy
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conceptlang.errors import ModelError
from conceptlang.interface import ConceptModel, ConceptRef, ConceptRegistry
from conceptlang.models.registry import load_registry, validate_manifest


def _manifest(models_dir) -> dict:
    return json.loads((models_dir / "manifest.json").read_text())


@pytest.fixture
def models_copy(tiny_models_dir, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(tiny_models_dir, dst)
    return dst


def test_registry_implements_the_protocol_and_resolves_names(tiny_models_dir):
    reg = load_registry(tiny_models_dir)
    assert isinstance(reg, ConceptRegistry)
    assert reg.candidates("red") == [ConceptRef("scenes", "color", value="red")]
    assert reg.candidates("red", "color") == [ConceptRef("scenes", "color", value="red")]
    assert reg.candidates("red", "shape") == []
    assert reg.candidates("position") == [ConceptRef("scenes", "position")]
    assert reg.candidates("mauve") == []
    names = reg.known_names()
    assert {"red", "color.red", "circle", "shape.circle", "position", "large"} <= set(names)
    assert not any("<none>" in n for n in names)
    model, cond = reg.model_for(ConceptRef("scenes", "color", value="red"))
    assert isinstance(model, ConceptModel) and cond == {"color": "red"}
    model2, cond2 = reg.model_for(ConceptRef("scenes", "position", params=(0.25, 0.75)))
    assert model2 is model and cond2 == {"position": (0.25, 0.75)}
    prior, pc = reg.prior("scenes")
    assert prior is model and pc == {}
    assert model.kind == "implicit" and model.noise_conditional and model.image_shape == (3, 32, 32)
    assert reg.domain("scenes").name == "scenes"
    with pytest.raises(ModelError, match="no models for domain 'scene'.*did you mean 'scenes'"):
        reg.domain("scene")
    assert reg.sampler_settings([model]) == {"sampler": "annealed", "step_size": 1e-5, "n_sigmas": 4}


def test_joint_hook_conditions_a_joint_model_on_every_concept(tiny_models_dir):
    reg = load_registry(tiny_models_dir)
    red, circle = ConceptRef("scenes", "color", value="red"), ConceptRef("scenes", "shape", value="circle")
    at = ConceptRef("scenes", "position", params=(0.25, 0.75))
    model, cond = reg.joint((red, circle, at))
    assert model is reg.model_for(red)[0] and cond == {"color": "red", "shape": "circle", "position": (0.25, 0.75)}
    assert model.encode([cond]).shape == model.encode([{"color": "red"}]).shape
    assert reg.joint((red,)) is None
    assert reg.joint((red, ConceptRef("scenes", "color", value="blue"))) is None  # one value per family


def test_lazy_loading_and_per_device_cache(tiny_models_dir):
    reg = load_registry(tiny_models_dir)
    model, cond = reg.model_for(ConceptRef("scenes", "color", value="red"))
    assert reg._cache == {}  # nothing read yet
    x = torch.zeros(2, 3, 32, 32)
    c = model.encode([cond, {}])
    s = model.score(x, c, torch.tensor([0.5, 0.5]))
    assert s.shape == x.shape and list(reg._cache) == [("tiny", "cpu")]
    first = reg._cache[("tiny", "cpu")]
    model.energy(x, c, None)
    assert reg._cache[("tiny", "cpu")] is first  # loaded once per device


def test_weights_round_trip_in_fp16(tiny_models_dir, tmp_path):


    reg = load_registry(tiny_models_dir)
    loaded = reg.handles["tiny"].impl("cpu").net
    st = torch.load(tiny_models_dir.parent / "run" / "checkpoint.pt", weights_only=True)
    for k, v in st["ema"].items():
        torch.testing.assert_close(loaded.state_dict()[k], v.half().float(), rtol=0, atol=0)


def test_checksum_mismatch_is_a_model_error(models_copy):
    path = models_copy / "tiny.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    reg = load_registry(models_copy)
    model, cond = reg.model_for(ConceptRef("scenes", "color", value="red"))
    with pytest.raises(ModelError, match="checksum mismatch"):
        model.score(torch.zeros(1, 3, 32, 32), model.encode([cond]), torch.tensor([0.5]))


def test_missing_weights_file_is_a_model_error(models_copy):
    (models_copy / "tiny.safetensors").unlink()
    reg = load_registry(models_copy)
    with pytest.raises(ModelError, match="weights file .* is missing"):
        reg.handles["tiny"].impl("cpu")


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.update(format_version=99), "format_version is 99"),
        (lambda d: d["models"][0].pop("sha256"), "missing key 'sha256'"),
        (lambda d: d["models"][0].update(kind="magic"), "'kind' must be one of implicit, explicit"),
        (lambda d: d["models"][0].update(layout="stacked"), "'layout' must be one of"),
        (lambda d: d["models"][0].update(sha256="xyz"), "64 lowercase hex"),
        (lambda d: d["models"][0].update(file="../evil.safetensors"), "inside the models folder"),
        (lambda d: d["models"][0]["families"]["color"].update(values=[]), "family 'color'.*distinct non-empty"),
        (lambda d: d["models"][0]["families"]["position"].update(ranges=[[0, 1]]), "one \\[lo, hi\\] per parameter"),
        (lambda d: d["models"][0].update(prior=False), "domain 'scenes' has no prior"),
        (lambda d: d["models"].append(copy.deepcopy(d["models"][0])), "duplicate model name"),
        (lambda d: d["models"].append({**copy.deepcopy(d["models"][0]), "name": "b"}), "already served by model 'tiny'"),
        (lambda d: d["models"][0]["architecture"].update({"class": "EnergyNet"}), "does not match architecture"),
        (lambda d: d.pop("models"), "missing key 'models'"),
        (lambda d: d["models"][0].update(concept_weights=[2]), "'concept_weights' must be an object"),
        (lambda d: d["models"][0].update(concept_weights={"male": 2}),
         "concept_weights: 'male' is not a concept of this model"),
        (lambda d: d["models"][0].update(concept_weights={"red": 0}), "concept_weights\\['red'\\] must be a finite number > 0"),
        (lambda d: d["models"][0].update(concept_weights={"red": True}), "concept_weights\\['red'\\] must be"),
        (lambda d: d["models"][0].update(concept_weights={"position": float("inf")}), "concept_weights\\['position'\\]"),
        (lambda d: d["models"][0].update(sigma_range=[0, 0.2]), "not allowed on the domain's prior model"),
        (lambda d: d["models"][0].update(sigma_range=[0.3, 0.2], prior=False), "must be \\[lo, hi\\] with 0 <= lo < hi"),
        (lambda d: d["models"][0].update(sigma_range=[None, 0.2], prior=False), "must be \\[lo, hi\\]"),
        (lambda d: d["models"][0].update(sigma_range=[0.1], prior=False), "must be \\[lo, hi\\]"),
        (lambda d: d["models"][0].update(sigma_range=[-1, None], prior=False), "must be \\[lo, hi\\]"),
        (lambda d: d["models"][0].update(sigma_range=[0, True], prior=False), "must be \\[lo, hi\\]"),
        (lambda d: d["models"][0].update(guidance_interval=[1, 0.5]), "'guidance_interval' must be \\[lo, hi\\]"),
        (lambda d: d["models"][0].update(guidance_interval=[0, None]), "'guidance_interval' must be \\[lo, hi\\]"),
        (lambda d: d["models"][0].update(guidance_interval=[0, True]), "'guidance_interval' must be \\[lo, hi\\]"),
        (lambda d: d["models"][0].update(prior_below=-0.01), "'prior_below' must be a noise level >= 0"),
        (lambda d: d["models"][0].update(prior_below=True), "'prior_below' must be a noise level >= 0"),
        (lambda d: d["models"][0].update(prior_below="0.02"), "'prior_below' must be a noise level >= 0"),
        (lambda d: d["models"][0].update(prior_keeps=["color"]), "'prior_keeps' needs 'prior_below'"),
        (lambda d: d["models"][0].update(prior_below=0.02, prior_keeps=["hue"]), "'prior_keeps' must be a list of distinct families"),
        (lambda d: d["models"][0].update(prior_below=0.02, prior_keeps="color"), "'prior_keeps' must be a list of distinct families"),
        (lambda d: d["models"][0].update(concept_weights_above=0.3), "'concept_weights_above' needs 'concept_weights'"),
        (lambda d: d["models"][0].update(concept_weights={"red": 2}, concept_weights_above=-1),
         "'concept_weights_above' must be a noise level >= 0"),
        (lambda d: d["models"][0].update(concept_weights={"red": 2}, concept_weights_above=True),
         "'concept_weights_above' must be a noise level >= 0"),
        (lambda d: d["models"][0].update(mirror=0.3), "'mirror' must be"),
        (lambda d: d["models"][0].update(mirror={"reflect": []}), "'mirror' must be"),
        (lambda d: d["models"][0].update(mirror={"below": 0.3, "flip": "x"}), "'mirror' must be"),
        (lambda d: d["models"][0].update(mirror={"below": -0.3}), "'mirror.below' must be a noise level >= 0"),
        (lambda d: d["models"][0].update(mirror={"below": 0.3, "reflect": "position.x"}), "'mirror.reflect' must be a list"),
        (lambda d: d["models"][0].update(mirror={"below": 0.3, "reflect": ["color.x"]}),
         "'mirror.reflect': 'color.x' is not a parameter of a continuous family"),
        (lambda d: d["models"][0].update(mirror={"below": 0.3, "turns": {"when": {"shape": ["circle"]}}}),
         "'mirror.turns' must be"),
        (lambda d: d["models"][0].update(mirror={"below": 0.3, "turns": {"when": {}, "swap": ["position.x", "position.y"]}}),
         "'mirror.turns.when' must map discrete families"),
        (lambda d: d["models"][0].update(mirror={"below": 0.3, "turns": {"when": {"shape": ["hexagon"]},
                                                                         "swap": ["position.x", "position.y"]}}),
         "'mirror.turns.when': 'shape': \\['hexagon'\\] does not name values"),
        (lambda d: d["models"][0].update(mirror={"below": 0.3, "turns": {"when": {"shape": ["circle"]},
                                                                         "reflect": ["color.y"],
                                                                         "swap": ["position.x", "position.y"]}}),
         "'mirror.turns.reflect' must list parameters"),
        (lambda d: d["models"][0].update(mirror={"below": 0.3, "turns": {"when": {"shape": ["circle"]},
                                                                         "swap": ["position.x", "position.x"]}}),
         "'mirror.turns.swap' must name two parameters"),
        (lambda d: d["models"][0].update(sampling_guidance=0), "'sampling_guidance' must be a number > 0"),
        (lambda d: d["models"][0].update(sampling_guidance=True), "'sampling_guidance' must be a number > 0"),
        (lambda d: d["models"][0].update(sampling_guidance=float("inf")), "'sampling_guidance' must be a number > 0"),
        (lambda d: (d["models"][0].update(sigma_range=[0, 1], kind="explicit", prior=False),
                    d["models"][0]["architecture"].update({"class": "EnergyNet"})), "needs a noise-conditional implicit model"),
    ],
)
def test_manifest_validation_errors(tiny_models_dir, mutate, message):
    data = _manifest(tiny_models_dir)
    mutate(data)
    with pytest.raises(ModelError, match=message):
        validate_manifest(data, "m.json")


def test_sigma_range_of():
    from conceptlang.models.registry import sigma_range_of

    assert sigma_range_of({}) is None
    assert sigma_range_of({"sigma_range": [0, 0.2]}) == (0.0, 0.2)
    assert sigma_range_of({"sigma_range": [0.5, None]}) == (0.5, float("inf"))


def test_unreadable_manifest(tmp_path):
    with pytest.raises(ModelError, match="no model manifest"):
        load_registry(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON .* line 1"):
        load_registry(tmp_path)


def test_env_variable_selects_the_models_dir(tiny_models_dir, monkeypatch):
    monkeypatch.setenv("CONCEPTLANG_MODELS", str(tiny_models_dir))
    assert load_registry().models_dir == tiny_models_dir


def test_ambiguous_bare_name_lists_every_candidate(models_copy):
    """A second domain that also has a value 'red' makes the bare name ambiguous; qualified stays fine."""
    data = _manifest(models_copy)
    other = copy.deepcopy(data["models"][0])
    other.update(name="paint", domain="paint", families={"color": {"kind": "discrete", "values": ["red", "ochre"]}})
    data["models"].append(other)
    (models_copy / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(models_copy)
    assert set(reg.candidates("red")) == {ConceptRef("scenes", "color", value="red"), ConceptRef("paint", "color", value="red")}
    assert reg.domain("paint").family("color").values == ("red", "ochre")
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.errors import NameResolutionError

    with pytest.raises(NameResolutionError) as err:
        compile_expr("red", reg)
    assert "scenes" in str(err.value) and "paint" in str(err.value)


def test_models_cli_lists_json_and_verifies(models_copy):
    from conceptlang.cli import main

    res = CliRunner().invoke(main, ["models", "--json", "--verify", "--models", str(models_copy)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    (row,) = data["models"]
    assert row["name"] == "tiny" and row["domain"] == "scenes" and row["file"] == "tiny.safetensors"
    assert row["checksum_ok"] is True and len(row["sha256"]) == 64
    res = CliRunner().invoke(main, ["models", "--models", str(models_copy / "nope")])
    assert res.exit_code == 1 and "no model manifest" in res.output and "Traceback" not in res.output


def test_train_cli_runs_and_resumes(tmp_path):
    from conceptlang.cli import main

    args = ["train", "faces", "all", "--iters", "2", "--batch-size", "8", "--widths", "8,16", "--out", str(tmp_path / "r"),
            "--quiet", "--threads", "1"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "trained faces-joint to iteration 2" in res.output
    res = CliRunner().invoke(main, args[:4] + ["4", "--out", str(tmp_path / "r"), "--resume", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "to iteration 4" in res.output
    res = CliRunner().invoke(main, ["train", "faces", "beard", "--iters", "1"])
    assert res.exit_code == 2 and "Invalid value for FAMILY: domain 'faces' has no family 'beard'" in res.output


def test_pixel_colour_model_trains_exports_and_loads_through_the_registry(tmp_path):
    """`train --arch pixel`: a shape-blind colour model, exported as a PixelNet and composed like any other."""
    from conceptlang.cli import main
    from conceptlang.models.export import export_run
    from conceptlang.models.networks import PixelNet
    from conceptlang.models.training import Trainer

    from .conftest import tiny_config

    Trainer(tiny_config(name="c-position", families=("position",), splits={"continual1": 1.0}, iters=1),
            tmp_path / "pos").train(progress=False)
    export_run(tmp_path / "pos", tmp_path / "models", prior=True)
    def config(name, **settings):
        (tmp_path / name).write_text(json.dumps(settings))
        return ["--config", str(tmp_path / name)]

    res = CliRunner().invoke(main, ["train", "scenes", "color", *config("a.json", blur=[1]), "--iters", "1", "--out", str(tmp_path / "u")])
    assert res.exit_code == 2 and "a.json: blur is an option of --arch pixel" in res.output
    res = CliRunner().invoke(main, ["train", "scenes", "color", *config("b.json", blur_of="max"), "--iters", "1",
                                   "--out", str(tmp_path / "u")])
    assert res.exit_code == 2 and "b.json: blur_of is an option of blur" in res.output
    res = CliRunner().invoke(main, ["train", "scenes", "color", "--arch", "pixel", *config("c.json", blur=[1, "x"]),
                                   "--out", str(tmp_path / "u")])
    assert res.exit_code == 2 and "c.json: blur must be a list of widths > 0 (pixels), got [1, 'x']" in res.output
    res = CliRunner().invoke(main, ["train", "scenes", "color", *config("d.json", blurs=[1]), "--out", str(tmp_path / "u")])
    assert res.exit_code == 2 and "d.json: unknown setting 'blurs'" in res.output
    args = ["train", "scenes", "color", "--split", "continual3", "--arch", "pixel", *config("e.json", blur=[1.5], blur_of="max"),
            "--widths", "8,8", "--iters", "2",
            "--batch-size", "8", "--name", "c-color", "--out", str(tmp_path / "col"), "--quiet", "--threads", "1"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "col" / "config.json").read_text())
    assert cfg["arch"] == "pixel" and cfg["net"] == {"blur": [1.5], "blur_of": "max", "widths": [8, 8]}
    entry = export_run(tmp_path / "col", tmp_path / "models", prior=False)
    assert entry["architecture"]["class"] == "PixelNet" and entry["architecture"]["config"]["blur"] == [1.5]
    reg = load_registry(tmp_path / "models")
    handle, cond = reg.model_for(ConceptRef("scenes", "color", value="red"))
    assert (handle.name, cond) == ("c-color", {"color": "red"})
    impl = handle.impl("cpu")
    assert isinstance(impl.net, PixelNet)
    x = torch.rand(2, 3, 32, 32)
    e = impl.energy(x, handle.encode([{"color": "red"}, {"color": "blue"}]), None)
    assert e.shape == (2,) and torch.isfinite(e).all()
    # an explicit model cannot claim the per-pixel denoiser
    data = _manifest(tmp_path / "models")
    bad = next(m for m in data["models"] if m["name"] == "c-color")
    bad["kind"] = "explicit"
    with pytest.raises(ModelError, match="kind 'explicit' does not match architecture 'PixelNet'"):
        validate_manifest(data, "m.json")


def test_pixel_position_model_gets_the_bump_map_and_scores_the_place(tmp_path):
    """`train scenes position --arch pixel`: the position family reaches the per-pixel net as its bump
    map (not with --no-spatial), and the exported model's energy depends on the named point."""
    from conceptlang.cli import main
    from conceptlang.models.export import export_run

    base = ["train", "scenes", "position", "--split", "continual1", "--arch", "pixel", "--widths", "8,8", "--iters", "2",
            "--batch-size", "8", "--name", "c-position", "--quiet", "--threads", "1"]
    res = CliRunner().invoke(main, base + ["--out", str(tmp_path / "flat"), "--no-spatial"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "flat" / "config.json").read_text())["net"] == {"widths": [8, 8]}
    res = CliRunner().invoke(main, base + ["--out", str(tmp_path / "pos")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "pos" / "config.json").read_text())["net"] == {"widths": [8, 8], "spatial": ["position"]}
    entry = export_run(tmp_path / "pos", tmp_path / "models", prior=True)
    assert entry["architecture"]["class"] == "PixelNet" and entry["architecture"]["config"]["spatial"] == ["position"]
    handle, cond = load_registry(tmp_path / "models").model_for(ConceptRef("scenes", "position", params=(0.3, 0.3)))
    impl = handle.impl("cpu")
    assert impl.net.conv_in.in_channels == 3 + 1
    with torch.no_grad():  # two iterations leave the zero-initialised output near zero: randomise to see the wiring
        for p in impl.net.parameters():
            p.normal_(0.0, 0.3)
    x = torch.rand(1, 3, 32, 32).expand(2, -1, -1, -1)
    e = impl.energy(x, handle.encode([{"position": (0.3, 0.3)}, {"position": (0.7, 0.6)}]), None)
    assert torch.isfinite(e).all() and abs(float(e[0] - e[1])) > 1e-3


def test_train_cli_passes_the_schedule_and_data_seed_to_the_config(tmp_path):
    from conceptlang.cli import main

    out = tmp_path / "c"
    args = ["train", "faces", "all", "--iters", "2", "--batch-size", "8", "--widths", "8,16", "--out", str(out), "--quiet",
            "--threads", "1", "--lr", "2e-3", "--lr-schedule", "cosine", "--lr-min", "1e-4", "--data-seed", "3"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["lr"], cfg["lr_schedule"], cfg["lr_min"], cfg["data_seed"]) == (2e-3, "cosine", 1e-4, 3)
    res = CliRunner().invoke(main, args[:-8] + ["--out", str(tmp_path / "d"), "--lr-min", "5e-3"])
    assert res.exit_code == 2 and "Invalid value for '--lr-min': the final learning rate must not exceed --lr (0.001), got 0.005" \
        in res.output and "Traceback" not in res.output
    assert not (tmp_path / "d").exists()


def test_per_family_models_share_a_domain_and_one_is_the_prior(tmp_path):
    """The continual layout: one model per family, trained on different splits; one carries the prior."""
    from conceptlang.models.export import export_run
    from conceptlang.models.training import Trainer

    from .conftest import tiny_config

    for fam, split, prior in (("position", "continual1", True), ("shape", "continual2", False)):
        Trainer(tiny_config(name=f"c-{fam}", families=(fam,), splits={split: 1.0}, iters=1), tmp_path / fam).train(progress=False)
        export_run(tmp_path / fam, tmp_path / "models", prior=prior)
    reg = load_registry(tmp_path / "models")
    entries = {e["name"]: e for e in reg.entries}
    assert entries["c-position"]["layout"] == entries["c-shape"]["layout"] == "per-family"
    assert entries["c-shape"]["data_split"] == {"continual2": 1.0}
    pos, _ = reg.model_for(ConceptRef("scenes", "position", params=(0.5, 0.5)))
    shape, cond = reg.model_for(ConceptRef("scenes", "shape", value="circle"))
    assert (pos.name, shape.name, cond) == ("c-position", "c-shape", {"shape": "circle"})
    assert reg.prior("scenes")[0] is pos
    assert reg.candidates("red") == []  # no colour model in this set
    assert reg.joint((ConceptRef("scenes", "position", params=(0.5, 0.5)), ConceptRef("scenes", "shape", value="circle"))) is None
    assert shape.encode([{"shape": "triangle"}]).tolist() == [[3.0]]


def test_train_cli_time_budget_sets_and_records_iters(tmp_path, monkeypatch):
    """The CLI sizes --iters from the measured rate (faked here: a real probe's time depends on the
    machine's load; measure_rate itself is tested in test_training.py)."""
    import time

    import conceptlang.models.training as training
    from conceptlang.cli import main

    calls = []

    def fake_rate(cfg, device="cpu", data_workers=0, steps=60, skip=20):
        calls.append((device, data_workers, steps, skip))
        time.sleep(0.02)
        return 100.0

    monkeypatch.setattr(training, "measure_rate", fake_rate)
    out = tmp_path / "t"
    args = ["train", "scenes", "shape", "--batch-size", "8", "--widths", "4,4", "--out", str(out), "--quiet", "--threads", "1"]
    res = CliRunner().invoke(main, args + ["--time-budget", "1", "--data-workers", "0"])
    assert res.exit_code == 0, res.output
    assert calls == [("cpu", 0, 120, 30)]
    cfg = json.loads((out / "config.json").read_text())
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert 85 <= cfg["iters"] <= 88 and cfg["iters"] == last["it"]  # 90% of 100 it/s × (1 s − the probe's time)
    assert f"100.0 it/s on cpu: --iters {cfg['iters']} fits 1 s" in res.output
    assert f"trained scenes-shape to iteration {cfg['iters']}" in res.output
    first = cfg["iters"]  # a resumed run's budget counts from where it stopped
    res = CliRunner().invoke(main, args + ["--time-budget", "1", "--resume"])
    assert res.exit_code == 0, res.output
    again = json.loads((out / "config.json").read_text())["iters"]
    assert first + 85 <= again <= first + 88 and f"resumed scenes-shape at iteration {first}" in res.output
    res = CliRunner().invoke(main, args + ["--time-budget", "6", "--iters", "3"])
    assert res.exit_code == 2 and "give --iters or --time-budget, not both" in res.output
    res = CliRunner().invoke(main, args + ["--time-budget", "0"])
    assert res.exit_code == 2 and "--time-budget" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, args[:-5] + ["--out", str(tmp_path / "u"), "--time-budget", "0.01"])
    assert res.exit_code == 1 and "--time-budget 0.01 s: timing the run alone took" in res.output


def test_concept_weights_come_from_the_manifest_and_reach_the_compiler(models_copy):
    from conceptlang.compiler import compile as compile_expr

    data = _manifest(models_copy)
    data["models"][0]["concept_weights"] = {"red": 2.0, "position": 1.5}
    (models_copy / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(models_copy)
    assert reg.concept_weight(ConceptRef("scenes", "color", value="red")) == 2.0
    assert reg.concept_weight(ConceptRef("scenes", "color", value="blue")) == 1.0
    assert reg.concept_weight(ConceptRef("scenes", "position", params=(0.2, 0.4))) == 1.5
    g = compile_expr("red", reg, and_mode="product")
    assert [n for n in g.notices if n.startswith("calibrated concept weights")] == [
        "calibrated concept weights (from the models' manifest): red ×2; "
        "concept_weights=False (CLI --no-concept-weights) scores concepts as written"]
    root = g.nodes[g.root]
    assert sorted(c for c, _ in root.terms) == [-1.0, 2.0]
    assert reg.describe()[0]["concept_weights"] == {"red": 2.0, "position": 1.5}
    from conceptlang.cli import main

    res = CliRunner().invoke(main, ["models", "--models", str(models_copy)])
    assert res.exit_code == 0 and "calibrated weights: red ×2, position ×1.5" in res.output


def test_export_drops_concept_weights_calibrated_for_the_old_weights(tiny_models_dir, tmp_path):
    from conceptlang.models.export import export_run

    models = tmp_path / "m"
    shutil.copytree(tiny_models_dir, models)
    data = _manifest(models)
    data["models"][0]["concept_weights"] = {"red": 2.0}
    data["models"][0]["concept_weights_above"] = 0.3
    data["models"][0]["mirror"] = {"below": 0.3, "reflect": ["position.x"]}
    (models / "manifest.json").write_text(json.dumps(data))
    assert load_registry(models).concept_weight(ConceptRef("scenes", "color", value="red")) == 2.0
    entry = export_run(tiny_models_dir.parent / "run", models)
    # the weights' level goes with them; the mirror (a statement about the data) stays
    assert "concept_weights" not in entry and "concept_weights_above" not in entry
    assert entry["mirror"] == {"below": 0.3, "reflect": ["position.x"]}
    assert load_registry(models).concept_weight(ConceptRef("scenes", "color", value="red")) == 1.0
    kept = export_run(tiny_models_dir.parent / "run", models, keep=("concept_weights",))
    assert "concept_weights" not in kept  # dropped by the export before
    data = _manifest(models)
    data["models"][0].update(concept_weights={"red": 2.0}, concept_weights_above=0.3)
    (models / "manifest.json").write_text(json.dumps(data))
    kept = export_run(tiny_models_dir.parent / "run", models, keep=("concept_weights",))
    assert kept["concept_weights"] == {"red": 2.0} and kept["concept_weights_above"] == 0.3


def test_sigma_range_wires_the_domain_prior_as_fallback(models_copy):
    from conceptlang.cli import main
    from conceptlang.compiler import compile as compile_expr

    data = _manifest(models_copy)
    tiny = data["models"][0]
    colour = copy.deepcopy(tiny)
    colour.update(name="tiny-colour", prior=False, layout="per-family", families={"color": tiny["families"].pop("color")},
                  sigma_range=[0, 0.2])
    data["models"].append(colour)
    (models_copy / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(models_copy)
    handle, cond = reg.model_for(ConceptRef("scenes", "color", value="red"))
    assert handle.name == "tiny-colour"
    assert handle.sigma_range == (0.0, 0.2) and reg.handles["tiny"].sigma_range is None
    impl = handle.impl("cpu")
    assert impl.sigma_range == (0.0, 0.2) and impl.fallback is reg.handles["tiny"].impl("cpu")
    assert reg.handles["tiny"].impl("cpu").sigma_range is None
    x = torch.randn(2, 3, 32, 32)
    sigma = torch.tensor([0.1, 0.5])
    with torch.no_grad():
        got = handle.score(x, handle.encode([cond, cond]), sigma)
        prior = reg.handles["tiny"].impl("cpu")
        want_hi = -prior.raw_eps(x[1:], prior.encode([{}]), sigma[1:]) / 0.5
    torch.testing.assert_close(got[1:], want_hi, rtol=1e-5, atol=1e-5)
    g = compile_expr("red & circle", reg, and_mode="product")
    assert ("tiny-colour acts at noise levels σ in [0, 0.2] only (its manifest's sigma_range); "
            "at other levels its concepts score as the domain prior") in g.notices
    assert {r["name"]: r["sigma_range"] for r in reg.describe()} == {"tiny": None, "tiny-colour": [0, 0.2]}
    res = CliRunner().invoke(main, ["models", "--models", str(models_copy)])
    assert res.exit_code == 0 and "acts at noise levels σ in [0, 0.2] only (sigma_range)" in res.output


def test_manifest_architecture_names_match_the_networks():
    """registry.ARCHITECTURES spells networks.NETWORKS' keys (without importing it); the implicit
    ones are the denoisers, and every `train --arch` name maps to one of them."""
    from conceptlang.models.networks import NETWORKS, EnergyNet
    from conceptlang.models.registry import ARCHITECTURES, IMPLICIT_ARCHITECTURES
    from conceptlang.models.training import ARCHES

    assert ARCHITECTURES == tuple(NETWORKS)
    assert IMPLICIT_ARCHITECTURES == tuple(k for k, (cls, _) in NETWORKS.items() if cls is not EnergyNet)
    assert set(ARCHES.values()) == set(IMPLICIT_ARCHITECTURES)


def test_guidance_interval_reaches_the_model(models_copy):
    data = _manifest(models_copy)
    data["models"][0]["guidance_interval"] = [0, 1.5]
    (models_copy / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(models_copy)
    assert reg.handles["tiny"].impl("cpu").guidance_interval == (0.0, 1.5)
    assert reg.describe()[0]["guidance_interval"] == [0, 1.5]


def test_mirror_and_weight_level_reach_the_model_and_the_compiler(models_copy):
    from conceptlang.compiler import compile as compile_expr

    data = _manifest(models_copy)
    data["models"][0]["mirror"] = {"below": 0.25, "reflect": ["position.x"]}
    data["models"][0]["concept_weights"] = {"red": 2.0}
    data["models"][0]["concept_weights_above"] = 0.3
    (models_copy / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(models_copy)
    model = reg.handles["tiny"].impl("cpu")
    assert (model.mirror_below, model.mirror_reflect) == (0.25, ("position.x",))
    assert model.passes_per_row == reg.handles["tiny"].passes_per_row == 2
    assert reg.describe()[0]["mirror_below"] == 0.25
    assert reg.describe()[0]["guidance_summary"].endswith("; below σ 0.25 averaged with its mirror image "
                                                          "(position.x reflected)")
    data["models"][0]["mirror"]["turns"] = {"when": {"shape": ["circle", "square"]}, "reflect": ["position.y"],
                                            "swap": ["position.x", "position.y"]}
    (models_copy / "manifest.json").write_text(json.dumps(data))
    turning = load_registry(models_copy).handles["tiny"].impl("cpu")
    assert turning.mirror_turns == ((("shape", ("circle", "square")),), ("position.y",), ("position.x", "position.y"))
    assert turning.passes_per_row == 2  # the turns take the mirror's rows in other orientations
    g = compile_expr("red & circle", reg)
    assert g.weights_above == 0.3 and g.low_linear_coefs is not None
    assert reg.concept_weights_above([reg.handles["tiny"]]) == 0.3


def test_prior_below_reaches_the_model_and_the_models_listing(models_copy):
    data = _manifest(models_copy)
    assert load_registry(models_copy).handles["tiny"].impl("cpu").prior_below is None
    data["models"][0]["prior_below"] = 0.02
    (models_copy / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(models_copy)
    assert reg.handles["tiny"].impl("cpu").prior_below == 0.02
    assert reg.describe()[0]["prior_below"] == 0.02
    assert reg.describe()[0]["guidance_summary"].endswith("; below σ 0.02 its prior alone")
    from conceptlang.cli import main

    res = CliRunner().invoke(main, ["models", "--models", str(models_copy)])
    assert res.exit_code == 0 and "; below σ 0.02 its prior alone" in res.output
    family = next(iter(data["models"][0]["families"]))
    data["models"][0]["prior_keeps"] = [family]
    (models_copy / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(models_copy)
    assert reg.handles["tiny"].impl("cpu").prior_keeps == (family,)
    assert reg.describe()[0]["prior_keeps"] == [family]
    res = CliRunner().invoke(main, ["models", "--models", str(models_copy)])
    assert res.exit_code == 0 and f"; below σ 0.02 its {family} condition alone, unguided" in res.output


def test_sampling_guidance_reaches_the_model_and_energies_keep_guidance(models_copy):
    data = _manifest(models_copy)
    data["models"][0]["sampling_guidance"] = 2.0
    (models_copy / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(models_copy)
    impl = reg.handles["tiny"].impl("cpu")
    assert (impl.sampling_guidance, impl.guidance) == (2.0, float(data["models"][0].get("guidance", 1.0)))
    assert reg.describe()[0]["sampling_guidance"] == 2.0


def test_absent_values_of_yes_no_attributes_come_from_the_none_token(tmp_path):
    from conceptlang.models.conditions import ABSENT
    from conceptlang.resources import shipped_models_dir

    # the shipped manifest (faces binaries have a <none> token), with a calibrated weight on male;
    # neither reads the weights files
    data = json.loads((shipped_models_dir() / "manifest.json").read_text())
    data["models"] = [e for e in data["models"] if e["domain"] == "faces"]
    data["models"][0]["concept_weights"] = {"male": 3.0}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(tmp_path)
    ref = ConceptRef("faces", "smiling", value="smiling")
    absent = reg.absent(ref)
    assert absent == ConceptRef("faces", "smiling", value="smiling", absent=True)
    assert reg.model_for(absent)[1] == {"smiling": ABSENT}
    assert reg.absent(ConceptRef("faces", "hair", value="bald")) is None  # four values: no absent token
    assert load_registry().absent(ConceptRef("scenes", "color", value="red")) is None
    assert reg.concept_weight(ConceptRef("faces", "male", value="male")) == 3.0
    assert reg.concept_weight(ConceptRef("faces", "male", value="male", absent=True)) == 1.0


def test_value_shares_are_the_training_data_conditionals():
    reg = load_registry()
    # the domain's distribution: every shape x colour x size triple equally likely, the four held
    # out of the train split included
    got = reg.value_shares("scenes", ("color", "size"), (ConceptRef("scenes", "shape", value="triangle"),))
    assert len(got) == 12 and all(abs(v - 1 / 12) < 0.012 for v in got.values())
    got = reg.value_shares("scenes", ("size",), (ConceptRef("scenes", "shape", value="triangle"),
                                                 ConceptRef("scenes", "color", value="yellow")))
    assert set(got) == {("small",), ("large",)} and abs(got[("large",)] - 0.5) < 0.05
    got = reg.value_shares("faces", ("hair", "male"), (ConceptRef("faces", "smiling", value="smiling", absent=True),))
    # independent attributes: hair uniform over four values, male or not (None) half and half
    assert set(got) == {(h, m) for h in ("black_hair", "blond_hair", "brown_hair", "bald") for m in ("male", None)}
    assert all(abs(v - 0.125) < 0.015 for v in got.values())


def test_value_shares_given_a_named_place_count_where_it_holds():
    """A named place in ``given`` holds within the language's tolerance of its point (drawn away:
    farther). Scenes centres are uniform over a box per shape and size, so given a disc inside
    both boxes p(large) = A_small / (A_small + A_large), and none where the large box is > 0.1 away."""
    from conceptlang.data import scenes

    reg = load_registry()
    tri = ConceptRef("scenes", "shape", value="triangle")

    def area(size):
        h = scenes.half_extent(np.array(2), scenes.EXTENT_ARRAY[scenes.SIZES.index(size)])
        return float(np.prod(1 - 2 * scenes.MARGIN - 2 * h))

    got = reg.value_shares("scenes", ("size",), (tri, ConceptRef("scenes", "position", params=(0.5, 0.5))))
    assert got[("large",)] == pytest.approx(area("small") / (area("small") + area("large")), abs=0.02)
    drawn = ConceptRef("scenes", "position", params=(0.5, 0.5), drawn=True)
    assert reg.value_shares("scenes", ("size",), (tri, drawn)) == got
    # the corner (0.2, 0.8): 0.12 from the large triangles' box, so only small ones
    got = reg.value_shares("scenes", ("size",), (tri, ConceptRef("scenes", "position", params=(0.2, 0.8))))
    assert got == {("small",): 1.0}
    # away from the centre: large objects, denser there, are fewer than half
    away = ConceptRef("scenes", "position", params=(0.5, 0.5), drawn=True, away=True)
    got = reg.value_shares("scenes", ("size",), (tri, away))
    a_s, a_l = area("small"), area("large")
    disc = np.pi * 0.1 ** 2
    want = (1 - disc / a_l) / ((1 - disc / a_s) + (1 - disc / a_l))
    assert got[("large",)] == pytest.approx(want, abs=0.01)
    # compiled and sampled with the same registry: the corner's branches are small triangles only
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.sampling import sample

    g = compile_expr("triangle & position(0.2, 0.8)", reg)
    assert {leaf.condition.get("size") for leaf in g.leaves if "shape" in leaf.condition} == {"small"}
    assert sample(g, 2, seed=0, steps=1).images.shape == (2, 3, 32, 32)


def test_joint_value_shares_are_fractions_of_all_the_data():
    """joint=True: the probability of each combination *and* the given refs, of all the draws. A
    triangle's centre is uniform over its size's box, so P(triangle, small, within 0.1 of the
    centre) = P(triangle) · P(small) · πr² / A_small; two far-apart negated points: the mass
    outside both discs; no families: {(): the given refs' probability}."""
    from conceptlang.data import scenes

    reg = load_registry()
    tri = ConceptRef("scenes", "shape", value="triangle")
    here = ConceptRef("scenes", "position", params=(0.5, 0.5))

    def area(size, shape=2):
        h = scenes.half_extent(np.array(shape), scenes.EXTENT_ARRAY[scenes.SIZES.index(size)])
        return float(np.prod(1 - 2 * scenes.MARGIN - 2 * h))

    disc = np.pi * 0.1 ** 2
    got = reg.value_shares("scenes", ("size",), (tri, here), joint=True)
    assert got[("small",)] == pytest.approx(1 / 3 * 1 / 2 * disc / area("small"), rel=0.05)
    assert got[("large",)] == pytest.approx(1 / 3 * 1 / 2 * disc / area("large"), rel=0.05)
    # its conditional form is the same counts normalised
    cond = reg.value_shares("scenes", ("size",), (tri, here))
    assert cond[("small",)] == pytest.approx(got[("small",)] / sum(got.values()), abs=1e-12)
    # no families: the probability of the given refs alone; away from two points: outside both discs
    (p_here,) = reg.value_shares("scenes", (), (here,), joint=True).values()
    assert p_here == pytest.approx(np.mean([disc / area(z, k) for z in scenes.SIZES for k in range(3)]), rel=0.05)
    both = ConceptRef("scenes", "position", params=(0.5, 0.5, 0.3, 0.3), drawn=True, away=True, points=2)
    (p_away,) = reg.value_shares("scenes", (), (both,), joint=True).values()
    (p_far,) = reg.value_shares("scenes", (), (ConceptRef("scenes", "position", params=(0.3, 0.3)),), joint=True).values()
    assert p_away == pytest.approx(1 - p_here - p_far, abs=1e-12)
    assert reg.value_shares("scenes", (), (tri,)) == {(): 1.0}
    # two close points (0.1 apart) cut the data into near one only, near both, near the other
    # only and away from both: the four counts partition the same draws exactly
    a, b = (0.5, 0.5), (0.6, 0.5)

    def p(ref):
        return reg.value_shares("scenes", (), (ref,), joint=True)[()]

    only_a = p(ConceptRef("scenes", "position", params=a, drawn=True, avoid=b))
    only_b = p(ConceptRef("scenes", "position", params=b, drawn=True, avoid=a))
    near_both = p(ConceptRef("scenes", "position", params=a + b, drawn=True, points=2))
    away_both = p(ConceptRef("scenes", "position", params=a + b, drawn=True, away=True, points=2))
    assert min(only_a, only_b, near_both, away_both) > 0
    assert only_a + only_b + near_both + away_both == pytest.approx(1.0, abs=1e-12)
    assert only_a + near_both == pytest.approx(p(ConceptRef("scenes", "position", params=a)), abs=1e-12)
