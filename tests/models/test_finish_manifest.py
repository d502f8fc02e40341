"""A models folder's finishing model (manifest ``finish_below``): validation, the registry's
``finisher`` hook, compiling and sampling with it, and the `models` listing."""

import copy
import json
import shutil

import pytest
from click.testing import CliRunner

from conceptlang.errors import ModelError
from conceptlang.models.registry import load_registry, validate_manifest


def _manifest(models_dir) -> dict:
    return json.loads((models_dir / "manifest.json").read_text())


def _finishing_entry(data: dict, name: str = "finish", below: float = 0.3) -> dict:
    """The tiny model's weights again, as a finishing model: no families, not the prior."""
    entry = copy.deepcopy(data["models"][0])
    entry.update(name=name, families={}, prior=False, finish_below=below)
    return entry


@pytest.fixture
def finishing_dir(tiny_models_dir, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(tiny_models_dir, dst)
    data = _manifest(dst)
    data["models"].append(_finishing_entry(data))
    (dst / "manifest.json").write_text(json.dumps(data))
    return dst


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d["models"][0].update(finish_below=0.3),
         "a finishing model \\('finish_below'\\) serves no family, got shape, color, size, position"),
        (lambda d: d["models"].append({**_finishing_entry(d), "finish_below": 0}), "'finish_below' must be a noise level > 0, got 0"),
        (lambda d: d["models"].append({**_finishing_entry(d), "finish_below": True}), "'finish_below' must be a noise level > 0"),
        (lambda d: d["models"].append({**_finishing_entry(d), "finish_below": float("nan")}), "'finish_below' must be a noise level > 0"),
        (lambda d: d["models"].append({**_finishing_entry(d), "finish_below": "0.3"}), "'finish_below' must be a noise level > 0"),
        (lambda d: (d["models"][0].update(prior=False), d["models"].append({**_finishing_entry(d), "prior": True})),
         "a finishing model \\('finish_below'\\) is not the domain's prior"),
        (lambda d: d["models"].append({**_finishing_entry(d), "kind": "explicit",
                                       "architecture": {**d["models"][0]["architecture"], "class": "EnergyNet"}}),
         "'finish_below' needs a noise-conditional implicit model, not kind 'explicit'"),
        (lambda d: d["models"].extend([_finishing_entry(d, "f1"), _finishing_entry(d, "f2")]),
         "model 'f2': domain 'scenes' already has a finishing model \\('f1'\\)"),
    ],
)
def test_finish_below_validation_errors(tiny_models_dir, mutate, message):
    data = _manifest(tiny_models_dir)
    mutate(data)
    with pytest.raises(ModelError, match=message):
        validate_manifest(data, "m.json")


def test_registry_finisher_compiles_and_samples_with_it(finishing_dir, tiny_models_dir):
    from conceptlang.compiler import compile
    from conceptlang.sampling import sample

    reg = load_registry(finishing_dir)
    model, below = reg.finisher("scenes")
    assert model.name == "finish" and below == 0.3
    assert load_registry(tiny_models_dir).finisher("scenes") is None
    with pytest.raises(ModelError, match="no models for domain 'sceens'"):
        reg.finisher("sceens")
    graph = compile("red", reg)
    assert graph.finish_model is model and graph.finish_below == 0.3
    assert [m.name for m in graph.models] == ["tiny", "finish"]
    # the tiny sampler's 4 levels run from σ_max down to σ_min: the levels below 0.3 evaluate the finishing model only
    res = sample(graph, 2, seed=0, steps=4, sigma_max=1.0, sigma_min=0.05, n_sigmas=4)
    assert res.images.shape == (2, 3, 32, 32) and bool(res.images.isfinite().all())
    assert model.forward_rows > 0
    assert compile("red", reg, finish=False).finish_model is None


def test_models_listing_names_the_finishing_model(finishing_dir):
    from conceptlang.cli import main

    out = CliRunner().invoke(main, ["models", "--models", str(finishing_dir)])
    assert out.exit_code == 0, out.output
    assert "(no concepts)  [finishing model: alone below σ = 0.3, finish_below]" in out.output
    listed = json.loads(CliRunner().invoke(main, ["models", "--models", str(finishing_dir), "--json"]).output)
    assert [m["finish_below"] for m in listed["models"]] == [None, 0.3]


def test_explain_shows_the_finish_and_no_finish_turns_it_off(finishing_dir):
    from conceptlang.cli import main

    on = CliRunner().invoke(main, ["explain", "red", "--models", str(finishing_dir)])
    off = CliRunner().invoke(main, ["explain", "red", "--models", str(finishing_dir), "--no-finish"])
    assert on.exit_code == 0 and off.exit_code == 0, (on.output, off.output)
    note = "below σ = 0.3 the finishing model finish alone denoises every chain"
    assert note in on.output and note not in off.output
    assert "finish" in on.output.split("models:", 1)[1].splitlines()[0]
    as_json = json.loads(CliRunner().invoke(main, ["explain", "red", "--models", str(finishing_dir), "--json"]).output)
    assert as_json["finish"] == {"model": "finish", "below": 0.3} and as_json["options"]["finish"] is True
    off_json = json.loads(CliRunner().invoke(main, ["explain", "red", "--models", str(finishing_dir), "--json",
                                                    "--no-finish"]).output)
    assert off_json["finish"] is None and off_json["options"]["finish"] is False
