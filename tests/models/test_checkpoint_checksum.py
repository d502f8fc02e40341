"""Trainer checkpoints carry a sha256 of their contents; a changed byte is refused on resume,
warm start and export instead of training on silently."""

import pytest
import torch

from conceptlang.errors import ModelError
from conceptlang.models.training import Trainer, load_checkpoint, save_checkpoint, state_digest

from .conftest import tiny_config


def _flip_weight_byte(path, tensor: torch.Tensor) -> None:
    """Flip one bit inside the stored bytes of ``tensor`` (located by its raw data)."""
    raw = tensor.detach().cpu().contiguous().numpy().tobytes()
    blob = bytearray(path.read_bytes())
    at = blob.find(raw[:64])
    assert at > 0
    blob[at + 10] ^= 0x01
    path.write_bytes(bytes(blob))


@pytest.fixture
def trained(tmp_path):
    tr = Trainer(tiny_config(iters=2), tmp_path / "run")
    tr.train(progress=False)
    return tr


def test_checkpoint_round_trip_keeps_its_digest(trained):
    st = torch.load(trained.checkpoint_path, weights_only=True)
    stored = st.pop("sha256")
    assert len(stored) == 64 and stored == state_digest(st) == state_digest(trained.state_dict())
    loaded = load_checkpoint(trained.checkpoint_path)
    assert "sha256" not in loaded and loaded["it"] == 2
    again = Trainer(tiny_config(iters=2), trained.run_dir)
    again.load()
    assert again.it == 2
    for k, v in trained.net.state_dict().items():
        assert torch.equal(v, again.net.state_dict()[k])


def test_a_flipped_weight_byte_is_refused_everywhere(trained, tmp_path):
    key = next(k for k, v in trained.net.state_dict().items() if v.numel() >= 64)
    # Without the checksum the flipped byte would load: torch does not check the data itself.
    before = torch.load(trained.checkpoint_path, weights_only=True)
    _flip_weight_byte(trained.checkpoint_path, trained.net.state_dict()[key])
    after = torch.load(trained.checkpoint_path, weights_only=True)
    changed = [(part, k) for part in ("net", "ema") for k in before[part] if not torch.equal(before[part][k], after[part][k])]
    assert len(changed) == 1 and changed[0][1] == key and after["it"] == before["it"]
    with pytest.raises(ModelError, match="fails its checksum: its contents changed after it was written"):
        load_checkpoint(trained.checkpoint_path)
    with pytest.raises(ModelError, match="fails its checksum"):
        Trainer(tiny_config(iters=4), trained.run_dir).load()
    with pytest.raises(ModelError, match="fails its checksum"):
        Trainer(tiny_config(iters=4, name="other"), tmp_path / "warm").warm_start(trained.run_dir)
    from conceptlang.models.export import export_run

    with pytest.raises(ModelError, match="fails its checksum"):
        export_run(trained.run_dir, tmp_path / "models")


def test_digest_sees_values_dtypes_shapes_and_structure():
    base = {"a": torch.arange(4, dtype=torch.float32), "b": [1, 2.5, "x"], "c": {1: torch.zeros(2, 2)}}
    d = state_digest(base)
    assert state_digest({"c": base["c"], "b": base["b"], "a": base["a"]}) == d  # key order does not matter
    changed = [
        {**base, "a": torch.tensor([0.0, 1.0, 2.0, 3.5])},
        {**base, "a": torch.arange(4, dtype=torch.float64)},
        {**base, "c": {1: torch.zeros(4)}},
        {**base, "b": (1, 2.5, "x")},
        {**base, "b": [1, 2.5000001, "x"]},
        {**base, "d": None},
    ]
    assert len({state_digest(x) for x in changed} | {d}) == len(changed) + 1


def test_old_checkpoints_without_a_checksum_still_load(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": 1, "it": 7, "w": torch.ones(3)}, path)
    assert load_checkpoint(path)["it"] == 7
    save_checkpoint({"format": 1, "it": 7, "w": torch.ones(3)}, path)
    assert load_checkpoint(path)["it"] == 7
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        load_checkpoint(path)
