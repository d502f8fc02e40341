"""conceptlang.models.manifest: one reader and writer of a models folder's manifest."""

import json
import shutil

import pytest

from conceptlang.errors import ModelError
from conceptlang.io import sha256_file
from conceptlang.models.manifest import manifest_data, read_manifest, update_manifest, write_manifest


@pytest.fixture
def models(tiny_models_dir, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(tiny_models_dir, dst)
    return dst


def test_update_manifest_validates_before_writing(models):
    path = models / "manifest.json"
    before = path.read_bytes()

    def break_it(data):
        data["models"][0]["kind"] = "neither"

    with pytest.raises(ModelError, match="kind"):
        update_manifest(models, break_it)
    assert path.read_bytes() == before  # nothing half-written

    update_manifest(models, lambda data: data["models"][0].__setitem__("guidance", 2.5))
    assert read_manifest(models)[0]["guidance"] == 2.5
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []


def test_manifest_data_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(ModelError, match="no model manifest"):
        manifest_data(tmp_path)
    assert manifest_data(tmp_path, create=True) == {"format_version": 1, "models": []}
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        manifest_data(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(ModelError, match="'models' list"):
        manifest_data(tmp_path)


def test_write_manifest_round_trips_and_the_checksum_is_the_files(models):
    data = manifest_data(models)
    entry = data["models"][0]
    assert entry["sha256"] == sha256_file(models / entry["file"])
    (models / "manifest.json").unlink()
    write_manifest(models, data)
    assert json.loads((models / "manifest.json").read_text()) == data
