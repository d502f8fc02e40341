import json
import math

import numpy as np
import pytest
import torch

from conceptlang.errors import ModelError
from conceptlang.models.training import DataStream, Trainer, denoise_loss, learning_rate, validate_config

from .conftest import TINY_NET, tiny_config


def _flat_state(tr: Trainer) -> dict:
    out = {f"net.{k}": v for k, v in tr.net.state_dict().items()}
    out.update({f"ema.{k}": v for k, v in tr.ema.state_dict().items()})
    for i, st in tr.opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = v
    return out


def _straight_equals_resumed(tmp_path, **kw) -> Trainer:
    """Train ``iters`` straight and 2 + resume + the rest; every weight, moment and RNG state must match."""
    straight = Trainer(tiny_config(**kw), tmp_path / "a")
    straight.train(progress=False)
    Trainer(tiny_config(**kw), tmp_path / "b").train(until=2, progress=False)
    resumed = Trainer(tiny_config(**kw), tmp_path / "b")
    resumed.load()
    assert resumed.it == 2
    resumed.train(progress=False)
    a, b = _flat_state(straight), _flat_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(straight.gen.get_state(), resumed.gen.get_state())
    return straight


@pytest.mark.parametrize("method", ["denoise", "cd"])
def test_resume_is_bit_identical(tmp_path, method):
    kw = {"method": method, "iters": 4}
    if method == "cd":
        kw.update(net={"widths": [8, 16], "emb_dim": 16}, cd_steps=2, cd_buffer=16)
    _straight_equals_resumed(tmp_path, **kw)


def test_resume_refuses_a_different_config(tmp_path):
    Trainer(tiny_config(iters=2), tmp_path / "r").train(progress=False)
    other = Trainer(tiny_config(iters=2, seed=5), tmp_path / "r")
    with pytest.raises(ModelError, match="seed was 0, now 5"):
        other.load()


def test_data_stream_is_a_function_of_the_iteration():
    cfg = tiny_config(splits={"train": 0.75, "two_objects": 0.25})
    s1, s2 = DataStream(cfg), DataStream(cfg)
    x5, idx5, pos5 = s1.batch(5)
    s1.batch(0)
    x5b, idx5b, pos5b = s2.batch(5)
    assert torch.equal(x5, x5b) and (pos5 == pos5b).all()
    assert x5.shape == (8, 3, 32, 32) and pos5.shape == (8, 2, 2)
    # one-object images repeat their object in the second slot; two-object ones do not
    chunk_pos = s1._chunk[2]
    n_two = int((~(chunk_pos[:, 0] == chunk_pos[:, 1]).all(1)).sum())
    assert n_two == 8  # 25% of a 32-image chunk


def test_config_validation():
    with pytest.raises(ModelError, match="unknown training method 'sgd'"):
        validate_config(tiny_config(method="sgd"))
    with pytest.raises(ModelError, match="multiple of the batch"):
        validate_config(tiny_config(chunk_size=30))
    with pytest.raises(ModelError, match="cond_dropout"):
        validate_config(tiny_config(cond_dropout=1.0))
    with pytest.raises(ModelError, match="unknown architecture 'mlp' \\(architectures: unet, pixel\\)"):
        validate_config(tiny_config(arch="mlp"))
    with pytest.raises(ModelError, match="architecture 'pixel' is a denoiser: it trains with method 'denoise', not 'dsm'"):
        validate_config(tiny_config(arch="pixel", method="dsm"))


def test_learning_rate_schedules():
    const = tiny_config(lr=1e-3, warmup=10, iters=100)
    assert learning_rate(const, 0) == pytest.approx(1e-4)  # warm-up: (it + 1) / warmup
    assert learning_rate(const, 4) == pytest.approx(5e-4)
    assert learning_rate(const, 9) == learning_rate(const, 99) == pytest.approx(1e-3)
    cos = tiny_config(lr=1e-3, lr_schedule="cosine", lr_min=1e-5, warmup=1, iters=100)
    assert learning_rate(cos, 0) == pytest.approx(1e-3)
    assert learning_rate(cos, 50) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)  # cos(π/2) = 0
    assert learning_rate(cos, 25) == pytest.approx(1e-5 + (1e-3 - 1e-5) * (1 + 2**-0.5) / 2)
    assert learning_rate(cos, 100) == learning_rate(cos, 150) == pytest.approx(1e-5)
    lrs = [learning_rate(cos, i) for i in range(101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone after a one-step warm-up
    warm_cos = tiny_config(lr=1e-3, lr_schedule="cosine", warmup=10, iters=100)
    assert learning_rate(warm_cos, 4) == pytest.approx(0.5 * 1e-3 * 0.5 * (1 + math.cos(math.pi * 0.04)))
    with pytest.raises(ModelError, match="unknown lr_schedule 'step'"):
        validate_config(tiny_config(lr_schedule="step"))
    with pytest.raises(ModelError, match="lr_min must be in"):
        validate_config(tiny_config(lr=1e-3, lr_min=2e-3))


def test_cosine_run_applies_the_schedule_and_resumes_bit_identically(tmp_path):
    straight = _straight_equals_resumed(tmp_path, iters=4, lr_schedule="cosine", lr_min=1e-4, warmup=1)
    assert straight.opt.param_groups[0]["lr"] == pytest.approx(learning_rate(straight.cfg, 3))
    logged = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert logged[-1]["it"] == 4 and logged[-1]["lr"] == pytest.approx(learning_rate(straight.cfg, 3))


def test_tiny_training_reduces_the_denoising_loss(tmp_path):
    cfg = tiny_config(iters=60, batch_size=16, chunk_size=64, lr=3e-3, checkpoint_every=60, log_every=20)
    tr = Trainer(cfg, tmp_path / "t")
    x0, idx, pos = tr.stream.batch(0)

    def held_out_loss() -> float:
        g = torch.Generator().manual_seed(123)  # same σ, noise and conditions every time
        from conceptlang.models.conditions import training_conditions

        cond = training_conditions(tr.net.config.slots, idx, pos, 0.3, g)
        with torch.no_grad():
            return float(denoise_loss(tr.net, x0, cond, cfg, g))

    before = held_out_loss()
    tr.train(progress=False)
    after = held_out_loss()
    assert after < 0.7 * before, (before, after)
    log = [json.loads(l) for l in (tmp_path / "t" / "log.jsonl").read_text().splitlines()]
    assert [r["it"] for r in log] == [20, 40, 60]


def test_warm_start_grows_the_input_conv_and_keeps_the_function(tmp_path):
    from conceptlang.models.conditions import encode_conditions

    src = Trainer(tiny_config(iters=2), tmp_path / "src")
    src.train(progress=False)
    grown = Trainer(tiny_config(iters=2, net=dict(TINY_NET, spatial=["position"]), init_from=str(tmp_path / "src")), tmp_path / "dst")
    assert grown.warm_start(tmp_path / "src") == 2
    w_old, w_new = src.ema.conv_in.weight, grown.ema.conv_in.weight
    assert w_new.shape == (8, 4, 3, 3) and torch.equal(w_new[:, :3], w_old) and not w_new[:, 3].any()
    slots = grown.net.config.slots
    cond = encode_conditions(slots, [{"position": (0.3, 0.6)}, {}])
    x, s = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0.3, 1.0])
    with torch.no_grad():
        torch.testing.assert_close(grown.ema(x, s, cond), src.ema(x, s, cond), rtol=0, atol=0)
    # the warm start is recorded: in the checkpoint (so a resumed run keeps it) and in the manifest entry
    from conceptlang.models.export import export_run

    grown.train(progress=False)
    again = Trainer(tiny_config(iters=2, net=dict(TINY_NET, spatial=["position"]), init_from=str(tmp_path / "src")), tmp_path / "dst")
    again.load()
    assert (again.it, again.init_it) == (2, 2)
    entry = export_run(tmp_path / "dst", tmp_path / "models")
    assert entry["training"]["warm_start"] == {"from": str(tmp_path / "src"), "iterations": 2}
    assert entry["training"]["iterations"] == 2
    from click.testing import CliRunner

    from conceptlang.cli import main

    res = CliRunner().invoke(main, ["models", "--models", str(tmp_path / "models")])
    assert res.exit_code == 0 and "denoise 2 it (+2 before a warm start)" in res.output
    # an incompatible source is refused with the tensor named
    other = Trainer(tiny_config(iters=2, net=dict(TINY_NET, widths=[8, 8])), tmp_path / "dst2")
    with pytest.raises(ModelError, match="has shape"):
        other.warm_start(tmp_path / "src")


def test_warm_start_adds_refine_blocks_that_start_as_the_identity(tmp_path):
    src = Trainer(tiny_config(iters=2), tmp_path / "src")
    src.train(progress=False)
    deeper = Trainer(tiny_config(iters=2, net=dict(TINY_NET, refine_blocks=2)), tmp_path / "dst")
    assert len(deeper.net.refine) == 2
    assert deeper.warm_start(tmp_path / "src") == 2
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    from conceptlang.models.networks import condition_width

    s = torch.tensor([0.02, 0.3, 5.0])

    cond = torch.zeros(3, condition_width(deeper.net.config.slots))
    with torch.no_grad():
        for module, before in ((deeper.net, src.net), (deeper.ema, src.ema)):
            torch.testing.assert_close(module(x, s, cond), before(x, s, cond), rtol=0, atol=0)
    # the blocks train: after two steps their output convolutions are no longer zero
    deeper.train(progress=False)
    assert deeper.net.refine[0].conv2.weight.abs().sum() > 0
    # only the refine blocks may be missing from the source: a deeper level may not
    wider = Trainer(tiny_config(iters=2, net=dict(TINY_NET, blocks_per_level=2)), tmp_path / "dst2")
    with pytest.raises(ModelError, match="has no tensor"):
        wider.warm_start(tmp_path / "src")


def test_warm_start_from_exported_weights(tmp_path, tiny_models_dir):
    from safetensors.torch import load_file

    tr = Trainer(tiny_config(iters=2, net=dict(TINY_NET, spatial=["position"])), tmp_path / "ft")
    assert tr.warm_start(tiny_models_dir / "tiny.safetensors") == 2  # the manifest entry's iterations
    shipped = load_file(str(tiny_models_dir / "tiny.safetensors"))
    for module in (tr.net, tr.ema):
        sd = module.state_dict()
        assert torch.equal(sd["sigma_emb.mlp.0.weight"], shipped["sigma_emb.mlp.0.weight"].float())
        assert torch.equal(sd["conv_in.weight"][:, :3], shipped["conv_in.weight"].float())
        assert not sd["conv_in.weight"][:, 3].any()
    with pytest.raises(ModelError, match="cannot read exported weights"):
        tr.warm_start(tmp_path / "missing.safetensors")
    # the registry's loader reads them: a file that does not match its manifest checksum is refused
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_models_dir, tampered)
    with open(tampered / "tiny.safetensors", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="checksum mismatch"):
        tr.warm_start(tampered / "tiny.safetensors")


def test_data_workers_build_the_same_batches_ahead():
    """Chunks drawn by worker processes equal the in-process ones, in order, after a jump, and after close()."""
    from conceptlang.models.training import chunk_arrays

    cfg = tiny_config(splits={"train": 0.75, "two_objects": 0.25})
    plain, ahead = DataStream(cfg), DataStream(cfg, workers=2)
    try:
        for i in (0, 1, 4, 5, 17, 3):  # 4 batches per 32-image chunk: chunks 0, 1, 4, 0
            (x, idx, pos), (xw, idxw, posw) = plain.batch(i), ahead.batch(i)
            assert torch.equal(x, xw) and np.array_equal(pos, posw), i
            assert idx.keys() == idxw.keys() and all(np.array_equal(idx[k], idxw[k]) for k in idx), i
        assert sorted(ahead._ahead) == [1, 2, 3]  # the chunks after 0 are on their way
    finally:
        ahead.close()
    assert ahead._pool is None and not ahead._ahead
    x, _, _ = ahead.batch(9)  # a closed stream starts its workers again
    ahead.close()
    images, _, _ = chunk_arrays("scenes", plain.parts, cfg.data_seed, 2)
    assert images.dtype == np.uint8 and images.shape == (32, 32, 32, 3)
    assert torch.equal(x, plain.batch(9)[0])
    with pytest.raises(ModelError, match="data workers must be >= 0, got -1"):
        DataStream(cfg, workers=-1)


def test_training_with_data_workers_matches_training_without(tmp_path):
    a = Trainer(tiny_config(iters=6), tmp_path / "a")
    b = Trainer(tiny_config(iters=6), tmp_path / "b", data_workers=1)
    assert a.train(progress=False) == b.train(progress=False)
    assert b.stream._pool is None  # train() stops its workers
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k


def test_iters_for_budget():
    from conceptlang.models.training import iters_for_budget

    assert iters_for_budget(50.0, 100.0) == 4500  # 90% of 50 it/s × 100 s
    assert iters_for_budget(50.0, 100.0, done=1000, safety=1.0) == 6000
    assert iters_for_budget(0.001, 1.0) == 1  # always at least one iteration
    for bad in (dict(rate=0.0, seconds=1.0), dict(rate=float("nan"), seconds=1.0), dict(rate=1.0, seconds=-2.0),
                dict(rate=1.0, seconds=1.0, safety=1.5)):
        with pytest.raises(ModelError, match="cannot size a run"):
            iters_for_budget(**bad)


def test_measure_rate_times_a_throwaway_copy(tmp_path):
    from conceptlang.models.training import measure_rate

    cfg = tiny_config(iters=4)
    rate = measure_rate(cfg, steps=6, skip=2)
    assert 0 < rate < 1e5 and cfg.iters == 4 and not (tmp_path / "r").exists()
    with pytest.raises(ModelError, match="steps \\(2\\) must exceed skip \\(2\\)"):
        measure_rate(cfg, steps=2, skip=2)


def test_cutout_paints_one_background_rectangle_per_chosen_image():
    from conceptlang.models.training import cutout

    n, h = 200, 20
    x = torch.rand(n, 3, h, h) + 1.0  # > 1 everywhere ...
    x[:, :, 0, 0] = -0.75  # ... except the background sample at the top-left pixel
    g = torch.Generator().manual_seed(3)
    y = cutout(x, 0.5, g, lo=0.2, hi=0.5)
    painted = (y != x).any(1)  # (N, H, W)
    assert ((y == -0.75) | ~painted[:, None]).all()  # painted pixels carry the background, every channel
    hit = painted.flatten(1).any(1)
    assert 0.35 < hit.float().mean() < 0.65  # about half the images
    for m in painted[hit]:
        rows, cols = m.any(1).nonzero().squeeze(1), m.any(0).nonzero().squeeze(1)
        hh, ww = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert 4 <= hh <= 10 and 4 <= ww <= 10  # sides within [0.2, 0.5] of 20 pixels
        corner = rows.min() == 0 and cols.min() == 0  # the rectangle covers the unchanged background pixel
        assert int(m.sum()) == hh * ww - int(corner)  # one filled rectangle
    # p = 0 changes nothing but draws as much from the generator (so runs stay comparable)
    g0, g1 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(cutout(x, 0.0, g0), x)
    cutout(x, 1.0, g1)
    assert torch.equal(g0.get_state(), g1.get_state())
    with pytest.raises(ModelError, match="cutout must be in"):
        validate_config(tiny_config(cutout=1.5))


def test_rotated_rect_mask_is_exact_at_right_angles_and_keeps_the_area():
    from conceptlang.models.training import rotated_rect_mask

    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    # centre (8, 6), 6 wide, 4 high: columns 5..10, rows 4..7
    m0 = rotated_rect_mask(16, 16, t(8.0), t(6.0), t(6.0), t(4.0), t(0.0))[0]
    want = torch.zeros(16, 16, dtype=torch.bool)
    want[4:8, 5:11] = True
    assert torch.equal(m0, want)
    # a quarter turn swaps the sides: 4 wide, 6 high, same centre (up to rounding at exact edges)
    m90 = rotated_rect_mask(16, 16, t(8.0), t(6.0), t(6.0), t(4.0), t(math.pi / 2 + 1e-9))[0]
    want = torch.zeros(16, 16, dtype=torch.bool)
    want[3:9, 6:10] = True
    assert torch.equal(m90, want)
    # an eighth turn of a 10 x 10 square is the diamond |dx| + |dy| < 10 / √2 about its centre
    m45 = rotated_rect_mask(32, 32, t(16.0), t(16.0), t(10.0), t(10.0), t(math.pi / 4))[0]
    want = torch.tensor([[abs(c + 0.5 - 16) + abs(r + 0.5 - 16) < 10 / math.sqrt(2) for c in range(32)] for r in range(32)])
    assert torch.equal(m45, want)
    assert abs(int(m45.sum()) - 100) <= 0.15 * 100  # about the area of the square


def test_rotated_cutout_paints_slanted_background_rectangles():
    from conceptlang.models.training import cutout

    n, h = 200, 20
    x = torch.rand(n, 3, h, h) + 1.0
    x[:, :, 0, 0] = -0.75
    y = cutout(x, 0.5, torch.Generator().manual_seed(3), form="rotated")
    painted = (y != x).any(1)
    assert ((y == -0.75) | ~painted[:, None]).all()
    hit = painted.flatten(1).any(1)
    assert 0.35 < hit.float().mean() < 0.65
    slanted = 0
    for m in painted[hit]:
        area = int(m.sum())
        assert 4 <= area <= 100 + 12  # at least a clipped corner of a 4 x 4, at most a 10 x 10 (+ pixel rounding)
        rows, cols = m.any(1).nonzero().squeeze(1), m.any(0).nonzero().squeeze(1)
        slanted += area < 0.9 * int(rows.max() - rows.min() + 1) * int(cols.max() - cols.min() + 1)
    assert slanted > 0.5 * int(hit.sum())  # most are turned: they fill much less than their bounding box
    g0, g1 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(cutout(x, 0.0, g0, form="rotated"), x)
    cutout(x, 1.0, g1, form="rotated")
    assert torch.equal(g0.get_state(), g1.get_state())
    with pytest.raises(ModelError, match="unknown cutout form 'oval'"):
        cutout(x, 0.5, g0, form="oval")
    with pytest.raises(ModelError, match="unknown cutout_form 'oval'"):
        validate_config(tiny_config(cutout=0.5, cutout_form="oval"))


def test_multi_cutout_paints_the_union_of_one_to_three_rectangles():
    from conceptlang.models.training import MULTI_CUTOUTS, cutout

    n, h = 300, 20
    x = torch.rand(n, 3, h, h) + 1.0
    x[:, :, 0, 0] = -0.75
    y = cutout(x, 0.5, torch.Generator().manual_seed(5), lo=0.2, hi=0.5, form="multi")
    painted = (y != x).any(1)
    assert ((y == -0.75) | ~painted[:, None]).all()
    # the same draws, rebuilt by slicing: image i gets rectangles 0..count-1 when chosen
    u = torch.rand(n, 2 + 4 * MULTI_CUTOUTS, generator=torch.Generator().manual_seed(5))
    counts = []
    for i in range(n):
        want = torch.zeros(h, h, dtype=torch.bool)
        count = min(1 + int(u[i, 1] * MULTI_CUTOUTS), MULTI_CUTOUTS)
        if u[i, 0] < 0.5:
            counts.append(count)
            for k in range(count):
                rw, rhh = (round((0.2 + 0.3 * float(u[i, 2 + 4 * k + j])) * h) for j in (0, 1))
                c0, r0 = int(float(u[i, 4 + 4 * k]) * (h - rw + 1)), int(float(u[i, 5 + 4 * k]) * (h - rhh + 1))
                want[r0:r0 + rhh, c0:c0 + rw] = True
        want[0, 0] = False  # painting the background pixel with itself changes nothing
        assert torch.equal(painted[i], want), i
    assert 0.4 < len(counts) / n < 0.6 and sorted(set(counts)) == [1, 2, 3]
    g0, g1 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(cutout(x, 0.0, g0, form="multi"), x)
    cutout(x, 1.0, g1, form="multi")
    assert torch.equal(g0.get_state(), g1.get_state())


@pytest.mark.parametrize("param, known", [("method", "METHODS"), ("lr_schedule", "LR_SCHEDULES"), ("arch", "ARCHES")])
def test_train_cli_choices_match_the_trainer(param, known):
    # The CLI spells its choices out (importing the trainer would load torch for `conceptlang parse`);
    # they must be exactly what validate_config accepts.
    import conceptlang.models.training as training
    from conceptlang.cli.model_cmds import CUTOUT_FORMS, train_cmd

    option = next(p for p in train_cmd.params if p.name == param)
    assert tuple(option.type.choices) == tuple(getattr(training, known))
    assert CUTOUT_FORMS == tuple(training.CUTOUT_FORMS)  # train --config's cutout_form


def test_train_config_file_defaults_match_the_trainer():
    """`train --config`'s settings that are TrainConfig fields default to the trainer's own values
    (the CLI spells them out so as not to import torch); blur and blur_of are network settings."""
    from conceptlang.cli.model_cmds import _SETTING_RULES, EXPERIMENT_SETTINGS
    from conceptlang.models.training import TrainConfig

    fields = TrainConfig.__dataclass_fields__
    shared = {k: v for k, v in EXPERIMENT_SETTINGS.items() if k in fields}
    assert set(EXPERIMENT_SETTINGS) - set(shared) == {"blur", "blur_of"}
    assert shared == {k: fields[k].default for k in shared}
    assert set(_SETTING_RULES) == set(EXPERIMENT_SETTINGS)  # every setting is checked


def test_cutout_training_resumes_bit_identically(tmp_path):
    a = _flat_state(_straight_equals_resumed(tmp_path, iters=4, cutout=0.5))
    plain = Trainer(tiny_config(iters=4), tmp_path / "c")
    plain.train(progress=False)
    assert not torch.equal(_flat_state(plain)["net.conv_in.weight"], a["net.conv_in.weight"])  # the cut-outs were trained on


def test_train_config_file_sets_the_experimental_settings(tmp_path):
    """`train --config FILE`: cutout and cutout_form (no longer in --help) reach the run's config."""
    import json

    from click.testing import CliRunner

    from conceptlang.cli import main

    (tmp_path / "exp.json").write_text(json.dumps({"cutout": 0.5, "cutout_form": "multi"}))
    args = ["train", "scenes", "shape", "--config", str(tmp_path / "exp.json"), "--widths", "8,8", "--iters", "1",
            "--batch-size", "8", "--out", str(tmp_path / "run"), "--quiet", "--threads", "1", "--device", "cpu"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["cutout"], cfg["cutout_form"]) == (0.5, "multi")
    assert "--cutout" not in CliRunner().invoke(main, ["train", "--help"]).output
    (tmp_path / "bad.json").write_text(json.dumps({"cutout": 2}))
    res = CliRunner().invoke(main, ["train", "scenes", "--config", str(tmp_path / "bad.json")])
    assert res.exit_code == 2 and "bad.json: cutout must be a number in [0, 1], got 2" in res.output


def test_low_sigma_share_draws_the_second_lognormal():
    """``low_share``: without it σ is exactly exp(p_mean + p_std·z) as before; with share 1 every σ
    follows lognormal(low_mean, low_std); with share 0.5 about half the images do."""
    from conceptlang.models.training import _sample_sigma

    n = 200_000
    plain = _sample_sigma(tiny_config(), n, torch.Generator().manual_seed(3))
    z = torch.randn(n, generator=torch.Generator().manual_seed(3))
    assert torch.equal(plain, torch.exp(-1.2 + 1.2 * z))
    low = _sample_sigma(tiny_config(low_share=1.0, low_mean=-3.7, low_std=0.6), n, torch.Generator().manual_seed(3)).log()
    assert abs(float(low.mean()) + 3.7) < 0.01 and abs(float(low.std()) - 0.6) < 0.01
    half = _sample_sigma(tiny_config(low_share=0.5, low_mean=-3.7, low_std=0.6), n, torch.Generator().manual_seed(3))
    # P(σ < e^-2.5) = ½·Φ((-2.5+1.2)/1.2) + ½·Φ((-2.5+3.7)/0.6) = ½·0.1393 + ½·0.9772
    assert abs(float((half < math.exp(-2.5)).double().mean()) - 0.5583) < 0.005
    for bad, msg in (({"low_share": 1.5}, "low_share must be in"), ({"low_std": 0.0}, "low_std must be > 0")):
        with pytest.raises(ModelError, match=msg):
            validate_config(tiny_config(**bad))


def test_train_config_file_sets_the_noise_levels(tmp_path):
    """`train --config FILE` carries the training noise-level and haze settings into the run's config."""
    from click.testing import CliRunner

    from conceptlang.cli import main

    (tmp_path / "low.json").write_text(json.dumps({"low_share": 0.5, "low_mean": -3.5, "p_std": 1, "haze": 2}))
    args = ["train", "scenes", "shape", "--config", str(tmp_path / "low.json"), "--widths", "8,8", "--iters", "1",
            "--batch-size", "8", "--out", str(tmp_path / "run"), "--quiet", "--threads", "1", "--device", "cpu"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["low_share"], cfg["low_mean"], cfg["low_std"], cfg["p_mean"], cfg["p_std"]) == (0.5, -3.5, 0.5, -1.2, 1.0)
    assert (cfg["haze"], cfg["haze_below"]) == (2.0, 0.2)
    (tmp_path / "bad.json").write_text(json.dumps({"low_std": -1}))
    res = CliRunner().invoke(main, ["train", "scenes", "--config", str(tmp_path / "bad.json")])
    assert res.exit_code == 2 and "bad.json: low_std must be a number > 0, got -1" in res.output


def test_haze_field_is_a_smooth_cast_of_bounded_rms():
    from conceptlang.models.training import haze_field

    h = haze_field(2000, (3, 32, 32), 3.0, torch.Generator().manual_seed(1))
    rms = h.pow(2).mean(dim=(1, 2, 3)).sqrt() * 127.5  # grey levels
    assert float(rms.max()) <= 3.0 + 1e-4 and abs(float(rms.mean()) - 1.5) < 0.05  # uniform on [0, 3]
    # smooth: neighbouring pixels differ by far less than the field's own size
    step = (h[..., 1:] - h[..., :-1]).abs().mean() / h.abs().mean()
    assert float(step) < 0.1


def test_haze_reaches_only_the_inputs_below_haze_below():
    """The cast is added to the noisy input of the images drawn at σ < haze_below; the target and
    every other image are as without it, and a run without haze draws exactly as before."""
    from conceptlang.models.training import _sample_sigma, haze_field

    seen = {}

    class Net:  # stands in for the U-Net: records its input, returns it (a denoiser that does nothing)
        config = type("C", (), {"sigma_data": 0.5})

        def denoise(self, x, sigma, cond):
            seen["x"], seen["sigma"] = x, sigma
            return x

    x0 = torch.zeros(64, 3, 8, 8)
    cfg = tiny_config(haze=2.0, haze_below=0.2)
    loss = denoise_loss(Net(), x0, None, cfg, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    sigma = _sample_sigma(cfg, 64, g)
    noise = torch.randn(64, 3, 8, 8, generator=g)
    cast = haze_field(64, (3, 8, 8), 2.0, g)
    low = sigma < 0.2
    assert 0 < int(low.sum()) < 64
    expected = noise * sigma[:, None, None, None] + cast * low[:, None, None, None]
    assert torch.allclose(seen["x"], expected, atol=1e-6)
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2  # EDM weight; the target is the clean x0 = 0
    assert torch.allclose(loss, (weight[:, None, None, None] * expected**2).mean(), rtol=1e-5)
    denoise_loss(Net(), x0, None, tiny_config(), torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    sigma = _sample_sigma(tiny_config(), 64, g)
    assert torch.equal(seen["x"], torch.randn(64, 3, 8, 8, generator=g) * sigma[:, None, None, None])
    with pytest.raises(ModelError, match="haze must be >= 0"):
        validate_config(tiny_config(haze=-1.0))
    with pytest.raises(ModelError, match="haze is a setting of method 'denoise', not 'dsm'"):
        validate_config(tiny_config(haze=1.0, method="dsm"))


def test_train_cli_refine_blocks(tmp_path):
    from click.testing import CliRunner

    from conceptlang.cli import main

    res = CliRunner().invoke(main, ["train", "scenes", "color", "--arch", "pixel", "--refine-blocks", "1",
                                    "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "--refine-blocks is an option of the U-Net" in res.output
    assert not (tmp_path / "p").exists()
    res = CliRunner().invoke(main, ["train", "scenes", "all", "--widths", "8,16", "--batch-size", "2", "--iters", "1",
                                    "--refine-blocks", "2", "--quiet", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    from conceptlang.models.export import export_run

    entry = export_run(tmp_path / "r", tmp_path / "models")
    assert entry["architecture"]["config"]["refine_blocks"] == 2
