"""Training on a labelled folder: the stream, resume, the run folder as a models folder, several processes."""

import json
import socket

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conceptlang.cli import main
from conceptlang.cli.data_cmds import write_dataset
from conceptlang.data.labelled import open_data
from conceptlang.models.conditions import training_conditions
from conceptlang.models.training import FolderStream, TrainConfig, Trainer, _EpochOrder

from .conftest import TINY_NET


def folder_config(data, **kw) -> TrainConfig:
    base = dict(name="tiny", domain=data.domain.name, iters=4, batch_size=8, checkpoint_every=2, log_every=2, warmup=2,
                net=dict(TINY_NET), image_size=data.domain.image_size, data=str(data.root), data_domain=data.domain.to_json())
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def faces_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces") / "f"
    write_dataset("faces", 20, root, seed=4, progress=False)
    return root


def test_epoch_order_visits_every_image_once_per_epoch():
    order = _EpochOrder(20, 4, data_seed=3)
    first = np.concatenate([order(i) for i in range(5)])
    second = np.concatenate([order(i) for i in range(5, 10)])
    assert sorted(first) == list(range(20)) and sorted(second) == list(range(20))
    assert not np.array_equal(first, second)  # a new permutation each epoch
    straddle = _EpochOrder(10, 4, data_seed=3)  # batch 2 holds the end of epoch 0 and the start of epoch 1
    assert sorted(np.concatenate([straddle(0), straddle(1), straddle(2)[:2]])) == list(range(10))


def test_folder_stream_same_batches_with_workers_and_shards(faces_folder):
    data = open_data(faces_folder)
    cfg = folder_config(data, iters=6)
    plain = FolderStream(cfg, data, workers=0)
    ahead = FolderStream(cfg, data, workers=2)
    halves = [FolderStream(cfg, data, workers=1, shard=(0, 4)), FolderStream(cfg, data, workers=0, shard=(4, 8))]
    for i in (0, 1, 2, 5, 3):  # a jump back restarts the loader at that batch
        x, idx, pos = plain.batch(i)
        x2, idx2, _ = ahead.batch(i)
        assert torch.equal(x, x2) and all(np.array_equal(idx[f], idx2[f]) for f in idx)
        parts = [h.batch(i) for h in halves]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert all(np.array_equal(p[1]["hair"], idx["hair"]) for p in parts)  # every shard gets the whole batch's labels
        rows = _EpochOrder(20, 8, 0)(i)
        assert np.array_equal(idx["male"], data.index["male"][rows])
        assert torch.equal(x[3], torch.from_numpy(data.image(int(rows[3])).copy()).permute(2, 0, 1).float() / 127.5 - 1.0)
    ahead.close()


def test_folder_run_resumes_bit_identically_and_is_a_models_folder(faces_folder, tmp_path):
    from conceptlang.models.registry import load_registry, sha256_file

    data = open_data(faces_folder)
    straight = Trainer(folder_config(data), tmp_path / "a", data_workers=0)
    straight.train(progress=False)
    Trainer(folder_config(data), tmp_path / "b", data_workers=1).train(until=2, progress=False)
    resumed = Trainer(folder_config(data), tmp_path / "b", data_workers=1)
    resumed.load()
    assert resumed.it == 2
    resumed.train(progress=False)
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)
    # the run folder is a models folder: one weights file (the last checkpoint's), a valid manifest
    run = tmp_path / "b"
    assert sorted(p.name for p in run.glob("*.safetensors")) == ["tiny.it0000004.safetensors"]
    reg = load_registry(run)
    (entry,) = reg.entries
    assert entry["domain"] == "faces" and entry["training"]["iterations"] == 4 and entry["training"]["weights"] == "ema"
    assert entry["sha256"] == sha256_file(run / entry["file"])
    assert set(entry["families"]) == {"hair", "male", "smiling", "eyeglasses", "young"}
    assert entry["sampler"]["sampler"] == "annealed"
    loaded = reg.handles["tiny"].impl("cpu").net.state_dict()
    for k, v in resumed.ema.state_dict().items():
        assert torch.equal(loaded[k], v.half().float()), k
    rows = [json.loads(r) for r in (run / "log.jsonl").read_text().splitlines()]
    assert [r["it"] for r in rows] == [2, 4]


def test_resume_drops_log_rows_past_the_checkpoint(faces_folder, tmp_path):
    data = open_data(faces_folder)
    Trainer(folder_config(data, iters=2), tmp_path / "r", data_workers=0).train(progress=False)
    with open(tmp_path / "r" / "log.jsonl", "a") as fh:  # a run killed at iteration 3, before its checkpoint
        fh.write(json.dumps({"it": 3, "loss": 1.0}) + "\n" + '{"it": 4, "lo')
    tr = Trainer(folder_config(data, iters=2), tmp_path / "r", data_workers=0)
    tr.load()
    assert [json.loads(r)["it"] for r in (tmp_path / "r" / "log.jsonl").read_text().splitlines()] == [2]


def test_a_family_with_no_known_value_is_null_not_a_value():
    from conceptlang.models.networks import SlotSpec

    slots = (SlotSpec("hair", "discrete", values=("black_hair", "blond_hair")),
             SlotSpec("male", "discrete", values=("male", "<none>")))
    idx = {"hair": np.array([[0], [1], [-1]]), "male": np.array([[0], [-1], [-1]])}
    cond = training_conditions(slots, idx, np.zeros((3, 1, 2), np.float32), 0.0, torch.Generator().manual_seed(0))
    assert cond.tolist() == [[1.0, 1.0], [2.0, 2.0], [0.0, 2.0]]


# ---- several processes ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg_json: dict, out: str, until: int | None = None, resume: bool = False) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        tr = Trainer(TrainConfig.from_json(cfg_json), out, data_workers=0)
        if resume:
            tr.load()
        losses = tr.train(until=until, progress=False)
        if rank == 0:
            torch.save({"net": tr.net.state_dict(), "losses": losses}, f"{out}/final.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~30 s: two spawned processes import torch
def test_two_processes_match_one_with_the_same_global_batch(faces_folder, tmp_path):
    import torch.multiprocessing as mp

    data = open_data(faces_folder)
    cfg = folder_config(data, iters=3, checkpoint_every=3, cutout=0.5)
    one = Trainer(cfg, tmp_path / "one", data_workers=0)
    losses = one.train(progress=False)
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg.to_json(), str(tmp_path / "two")), nprocs=2, join=True)
    two = torch.load(tmp_path / "two" / "final.pt", weights_only=True)
    assert np.allclose(two["losses"], losses, rtol=1e-5, atol=1e-6)
    for k, v in one.net.state_dict().items():
        assert torch.allclose(two["net"][k], v, rtol=1e-4, atol=1e-5), k
    # rank 0 wrote the run folder, a models folder like the one-process run's
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["models"][0]["training"]["iterations"] == 3


@pytest.mark.slow  # ~40 s: three rounds of two spawned processes
def test_two_process_run_killed_at_a_checkpoint_resumes_to_the_straight_run(faces_folder, tmp_path):
    import torch.multiprocessing as mp

    data = open_data(faces_folder)
    cfg = folder_config(data, iters=4, checkpoint_every=2).to_json()
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path / "straight")), nprocs=2, join=True)
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path / "cut"), 2), nprocs=2, join=True)
    assert json.loads((tmp_path / "cut" / "manifest.json").read_text())["models"][0]["training"]["iterations"] == 2
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path / "cut"), None, True), nprocs=2, join=True)
    straight = torch.load(tmp_path / "straight" / "final.pt", weights_only=True)
    resumed = torch.load(tmp_path / "cut" / "final.pt", weights_only=True)
    assert len(resumed["losses"]) == 2 and resumed["losses"] == straight["losses"][2:]
    for k, v in straight["net"].items():
        assert torch.equal(resumed["net"][k], v), k
    rows = [json.loads(r) for r in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["it"] for r in rows] == [2, 4]


# ---- the command line -----------------------------------------------------------------------------


def test_train_cli_refuses_bad_data_before_training(tmp_path):
    write_dataset("faces", 8, tmp_path / "f", seed=2, progress=False)
    lines = (tmp_path / "f" / "labels.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"file": "images/000002.png"', '"file": "images/gone.png"')
    (tmp_path / "f" / "labels.jsonl").write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "f"), "--iters", "2", "--out", str(tmp_path / "run")])
    assert res.exit_code == 1
    assert "labels.jsonl, line 3: image images/gone.png is missing" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()
    res = CliRunner().invoke(main, ["train", "scenes", "--data", str(tmp_path / "f")])
    assert res.exit_code == 2 and "not both" in res.output
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "f"), "--image-size", "48"])
    assert res.exit_code == 2 and "'48' is not one of '32', '64', '128'" in res.output


def test_celeba_jpegs_train_and_sample_end_to_end(tmp_path):
    """The issue's end-to-end check: a CelebA-layout folder of JPEGs made from procedural faces,
    trained for a few iterations, sampled with `(male & smiling) | ~black_hair` from the run."""
    from PIL import Image

    from conceptlang.data import generate

    from ..data.test_labelled import NAMES

    images, labels = generate("faces", 24, seed=9, image_size=64)
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    rows = [str(len(images)), " ".join(NAMES)]
    for i, (img, lab) in enumerate(zip(images, labels)):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(img).resize((178, 218)).save(root / "img_align_celeba" / name, quality=95)
        rows.append(name + " " + " ".join(" 1" if lab.get(n.lower()) else "-1" for n in NAMES))
    (root / "list_attr_celeba.txt").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(root), "--attributes", "Male,Smiling,Black_Hair,Eyeglasses",
                                    "--image-size", "32", "--iters", "3", "--batch-size", "4", "--widths", "8,16",
                                    "--data-workers", "1", "--out", str(run), "--quiet", "--threads", "1"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["models"][0]["domain"] == "celeba"
    assert list(manifest["models"][0]["families"]) == ["male", "smiling", "black_hair", "eyeglasses"]
    out = tmp_path / "s.png"
    res = CliRunner().invoke(main, ["sample", "(male & smiling) | ~black_hair", "--models", str(run), "-n", "2",
                                    "--seed", "1", "--device", "cpu", "-o", str(out)])
    assert res.exit_code == 0, res.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["domain"] == "celeba" and side["n"] == 2
    assert [m["file"] for m in side["models"]] == ["celeba-joint.it0000003.safetensors"]
    assert {leaf["concept"] for leaf in side["graph"]["leaves"]} == {"male.male & smiling.smiling", "black_hair.black_hair", "prior"}
    assert Image.open(out).size[0] > 2 * 32  # two 32-px samples side by side


def test_train_cli_resumes_a_data_run_from_its_folder(faces_folder, tmp_path):
    run = tmp_path / "run"
    opts = ["--batch-size", "4", "--checkpoint-every", "2", "--data-workers", "0", "--quiet", "--threads", "1"]
    common = [*opts, "--out", str(run)]
    res = CliRunner().invoke(main, ["train", "--data", str(faces_folder), "--iters", "2", "--widths", "8,16", *common])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["train", "--resume", "--iters", "4", *common])  # no --data: the run's config says
    assert res.exit_code == 0, res.output
    assert "resumed faces-joint at iteration 2" in res.output
    straight = tmp_path / "straight"
    res = CliRunner().invoke(main, ["train", "--data", str(faces_folder), "--iters", "4", "--widths", "8,16",
                                    *opts, "--out", str(straight)])
    assert res.exit_code == 0, res.output
    a = torch.load(run / "checkpoint.pt", weights_only=True)
    b = torch.load(straight / "checkpoint.pt", weights_only=True)
    assert a["it"] == b["it"] == 4
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    assert json.loads((run / "manifest.json").read_text())["models"][0]["training"]["iterations"] == 4


def test_export_names_a_data_folder_under_the_working_directory_relatively(faces_folder, tmp_path, monkeypatch):
    from conceptlang.models.export import export_run

    data = open_data(faces_folder)
    run = tmp_path / "run"
    Trainer(folder_config(data, iters=2), run, data_workers=0).train(progress=False)
    recorded = json.loads((run / "config.json").read_text())["data"]
    assert recorded == str(faces_folder.resolve())
    # exported from the folder above the data: a path relative to it, in the manifest and the model record
    monkeypatch.chdir(faces_folder.parent.parent)
    export_run(run, tmp_path / "m1", name="tiny")
    rel = f"{faces_folder.parent.name}/{faces_folder.name}"
    manifest = json.loads((tmp_path / "m1" / "manifest.json").read_text())
    assert manifest["models"][0]["training"]["config"]["data"] == rel
    assert json.loads((tmp_path / "m1" / "tiny.json").read_text())["training"]["data"] == rel
    # from elsewhere: the path as the run recorded it
    monkeypatch.chdir(tmp_path)
    export_run(run, tmp_path / "m2", name="tiny")
    manifest = json.loads((tmp_path / "m2" / "manifest.json").read_text())
    assert manifest["models"][0]["training"]["config"]["data"] == recorded
