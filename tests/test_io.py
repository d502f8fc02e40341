"""conceptlang.io: files are replaced whole (temp file, then rename), with ordinary permissions."""

import os
import stat

import pytest

from conceptlang.io import atomic_path, write_json, write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_0666_less_the_umask_not_mkstemps_0600(tmp_path, umask_022):
    p = tmp_path / "sub" / "a.json"
    write_json(p, {"a": 1})
    assert p.read_text() == '{\n  "a": 1\n}\n'
    assert _mode(p) == 0o644
    assert [q.name for q in p.parent.iterdir()] == ["a.json"]  # no temp file left beside it


def test_replacing_a_file_keeps_its_mode(tmp_path, umask_022):
    p = tmp_path / "b.txt"
    p.write_text("old")
    os.chmod(p, 0o600)
    write_text(p, "new")
    assert p.read_text() == "new" and _mode(p) == 0o600
    os.chmod(p, 0o664)
    write_text(p, "newer")
    assert p.read_text() == "newer" and _mode(p) == 0o664


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("kept")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert p.read_text() == "kept"
    assert [q.name for q in tmp_path.iterdir()] == ["c.txt"]


def test_jsonable_turns_numpy_and_torch_values_into_json_types():
    import json

    import numpy as np
    import torch

    from conceptlang.io import jsonable

    value = {1: (np.float32(0.5), np.bool_(True), np.int64(3)), "a": np.arange(3), "t": torch.tensor([1.5, 2.0]),
             "none": None, "obj": {1, 2}.__class__}
    out = jsonable(value)
    assert out == {"1": [0.5, True, 3], "a": [0, 1, 2], "t": [1.5, 2.0], "none": None, "obj": "<class 'set'>"}
    assert type(out["1"][1]) is bool and type(out["1"][2]) is int
    json.dumps(out)
