"""A user's models folder: architecture configs checked field by field at validation, weights
files that are missing, altered, non-finite or outside the folder refused, `models --verify`."""

import json
import os
import shutil

import pytest
import torch
from click.testing import CliRunner

from conceptlang.cli import main
from conceptlang.errors import ModelError
from conceptlang.models.registry import load_registry, validate_manifest, verify_weights


@pytest.fixture
def models_copy(tiny_models_dir, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(tiny_models_dir, dst)
    return dst


def _manifest(models_dir) -> dict:
    return json.loads((models_dir / "manifest.json").read_text())


def _config(data) -> dict:
    return data["models"][0]["architecture"]["config"]


PREFIX = "m.json, model 'tiny', architecture.config"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.update(groups=0), ": 'groups' must be an integer in \\[1, 1024\\], got 0"),
        (lambda c: c.update(channels="x"), ": 'channels' must be an integer in \\[1, 64\\], got 'x'"),
        (lambda c: c.update(channels=True), ": 'channels' must be an integer in \\[1, 64\\], got True"),
        (lambda c: c.update(widths=[-1]), ": 'widths' must be a non-empty list of integers in \\[1, 8192\\], got \\[-1\\]"),
        (lambda c: c.update(widths=[]), ": 'widths' must be a non-empty list"),
        (lambda c: c.update(widths=[8, 2.5]), ": 'widths' must be a non-empty list"),
        (lambda c: c.update(image_size=0), ": 'image_size' must be an integer in \\[1, 1024\\], got 0"),
        (lambda c: c.update(refine_blocks=-1), ": 'refine_blocks' must be an integer in \\[0, 16\\], got -1"),
        (lambda c: c.update(refine_blocks=17), ": 'refine_blocks' must be an integer in \\[0, 16\\], got 17"),
        (lambda c: c.update(image_size=10**9), ": 'image_size' must be an integer in \\[1, 1024\\]"),
        (lambda c: c.update(image_size=31), ": 'image_size' 31 must be divisible by 2\\^1"),
        (lambda c: c.update(frobnicate=1), ": unknown key 'frobnicate' for a UNet \\(known: image_size, channels"),
        (lambda c: c.pop("image_size"), ": missing key 'image_size'"),
        (lambda c: c.pop("widths"), ": missing key 'widths'"),
        (lambda c: c.update(attention="yes"), ": 'attention' must be true or false, got 'yes'"),
        (lambda c: c.update(sigma_data=float("nan")), ": 'sigma_data' must be a finite number > 0"),
        (lambda c: c.update(sigma_data=0), ": 'sigma_data' must be a finite number > 0, got 0"),
        (lambda c: c.update(spatial=["colour"]), ": 'spatial' family 'colour' must be a continuous slot with two parameters"),
        (lambda c: c.update(spatial=["color"]), ": 'spatial' family 'color' must be a continuous slot"),
        (lambda c: c.update(slots="x"), ": 'slots' must be a list"),
        (lambda c: c["slots"][0].update(kind="fuzzy"), ".slots\\[0\\]: 'kind' must be 'discrete' or 'continuous'"),
        (lambda c: c["slots"][0].update(values=[]), ".slots\\[0\\]: a discrete slot needs a non-empty list"),
        (lambda c: c["slots"].append(dict(c["slots"][0])), ".slots\\[4\\]: 'family' must be a distinct non-empty name, got 'shape'"),
        (lambda c: c["slots"][0].pop("family"), ".slots\\[0\\]: missing key 'family'"),
    ],
)
def test_bad_architecture_config_is_refused_naming_model_and_field(tiny_models_dir, mutate, message):
    data = _manifest(tiny_models_dir)
    mutate(_config(data))
    with pytest.raises(ModelError, match="^" + PREFIX.replace("(", "\\(").replace(")", "\\)") + message):
        validate_manifest(data, "m.json")


def test_pixelnet_and_energynet_configs_are_checked_against_their_own_fields(tiny_models_dir):
    data = _manifest(tiny_models_dir)
    arch = data["models"][0]["architecture"]
    arch["class"], arch["config"] = "PixelNet", {"image_size": 32, "widths": [8], "blur": [9.0]}
    with pytest.raises(ModelError, match="'blur' must be a list of blur widths in \\(0, image_size/6\\], got \\[9.0\\]"):
        validate_manifest(data, "m.json")
    arch["config"] = {"image_size": 32, "widths": [8], "blur_of": "min"}
    with pytest.raises(ModelError, match="'blur_of' must be 'rgb' or 'max', got 'min'"):
        validate_manifest(data, "m.json")
    arch["config"] = {"image_size": 30, "widths": [8, 8], "blur": [1.5], "blur_of": "max"}
    validate_manifest(data, "m.json")  # no halving in a PixelNet: any size is fine
    arch["config"] = {"image_size": 32, "widths": [8], "groups": 4}
    with pytest.raises(ModelError, match="unknown key 'groups' for a PixelNet"):
        validate_manifest(data, "m.json")


def test_every_config_the_shipped_and_tiny_models_use_passes(tiny_models_dir):
    from conceptlang.models.registry import read_manifest
    from conceptlang.resources import shipped_models_dir

    assert len(read_manifest(shipped_models_dir())) >= 2
    assert len(read_manifest(tiny_models_dir)) == 1
    data = _manifest(tiny_models_dir)
    for n in (0, 2):
        _config(data)["refine_blocks"] = n
        validate_manifest(data, "m.json")


def test_sample_and_verify_refuse_a_zeroed_config_cleanly(models_copy, tmp_path):
    data = _manifest(models_copy)
    _config(data)["groups"] = 0
    (models_copy / "manifest.json").write_text(json.dumps(data))
    for args in (["models", "--verify", "--models", str(models_copy)],
                 ["sample", "red", "--models", str(models_copy), "-n", "1", "--steps", "1", "--device", "cpu",
                  "-o", str(tmp_path / "x.png")]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and (res.exception is None or isinstance(res.exception, SystemExit)), res.output
        assert "model 'tiny', architecture.config: 'groups' must be an integer in [1, 1024], got 0" in res.output
    assert not (tmp_path / "x.png").exists()


def test_verify_exits_1_and_says_missing_or_mismatch(models_copy):
    ok = CliRunner().invoke(main, ["models", "--verify", "--models", str(models_copy)])
    assert ok.exit_code == 0 and "checksum ok" in ok.output
    weights = models_copy / "tiny.safetensors"
    b = bytearray(weights.read_bytes())
    b[-1] ^= 1
    weights.write_bytes(bytes(b))
    bad = CliRunner().invoke(main, ["models", "--verify", "--models", str(models_copy)])
    assert bad.exit_code == 1 and "CHECKSUM MISMATCH" in bad.output
    assert "error: 1 weights file(s) in" in bad.output and "tiny: tiny.safetensors checksum mismatch" in bad.output
    js = CliRunner().invoke(main, ["models", "--verify", "--json", "--models", str(models_copy)])
    assert js.exit_code == 1
    row = json.loads(js.stdout)["models"][0]
    assert row["checksum"] == "mismatch" and row["checksum_ok"] is False
    weights.unlink()
    gone = CliRunner().invoke(main, ["models", "--verify", "--models", str(models_copy)])
    assert gone.exit_code == 1 and "WEIGHTS FILE MISSING" in gone.output and "tiny.safetensors missing" in gone.output
    assert "mismatch" not in gone.output.lower()
    assert "Traceback" not in bad.output + gone.output


def test_a_symlink_out_of_the_models_folder_is_refused(models_copy, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(models_copy / "tiny.safetensors", outside)
    os.symlink(outside, models_copy / "tiny.safetensors")
    entry = _manifest(models_copy)["models"][0]
    with pytest.raises(ModelError, match="resolves to .*elsewhere.safetensors, outside the models folder"):
        verify_weights(entry, models_copy)
    reg = load_registry(models_copy)
    with pytest.raises(ModelError, match="outside the models folder"):
        reg.handles["tiny"].impl("cpu")
    res = CliRunner().invoke(main, ["models", "--verify", "--models", str(models_copy)])
    assert res.exit_code == 1 and "outside the models folder" in res.output and "Traceback" not in res.output
    assert reg.describe()[0]["bytes"] is None  # the listing reports no size of a file outside the folder
    # A link that stays inside the folder is fine.
    (models_copy / "tiny.safetensors").unlink()
    (models_copy / "sub").mkdir()
    shutil.move(outside, models_copy / "sub" / "w.safetensors")
    os.symlink(models_copy / "sub" / "w.safetensors", models_copy / "tiny.safetensors")
    assert verify_weights(entry, models_copy) == "ok"
    assert load_registry(models_copy).describe()[0]["bytes"] == (models_copy / "sub" / "w.safetensors").stat().st_size


def test_non_finite_weights_are_refused_at_load(models_copy):
    from safetensors.torch import load_file, save_file

    from conceptlang.models.registry import sha256_file

    path = models_copy / "tiny.safetensors"
    state = load_file(str(path))
    key = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(path))
    data = _manifest(models_copy)
    data["models"][0]["sha256"] = sha256_file(path)  # a consistent manifest: the file itself is bad
    (models_copy / "manifest.json").write_text(json.dumps(data))
    reg = load_registry(models_copy)
    with pytest.raises(ModelError, match=f"model 'tiny': weights tensor {key} in .* holds 1 non-finite value"):
        reg.handles["tiny"].impl("cpu")
    assert torch.isnan(state[key]).sum() == 1
