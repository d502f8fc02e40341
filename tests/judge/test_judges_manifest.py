"""The judges manifest goes through conceptlang.models.manifest: validated on every read and before
every write, each checkpoint checksum-verified on load, errors naming the file, judge and key."""

import copy
import json
import shutil

import pytest

from conceptlang.errors import ModelError
from conceptlang.judge.load import judges_dir, load_judge
from conceptlang.judge.measure import store_metrics
from conceptlang.judge.training import TrainConfig, train_judge
from conceptlang.models.manifest import load_judges_manifest, update_judges_manifest, validate_judges_manifest

SHIPPED = json.loads((judges_dir() / "manifest.json").read_text())

LABELLED = {
    "kind": "labelled", "domain": "cars", "file": "cars.safetensors", "sha256": "0" * 64,
    "families": [{"name": "colour", "values": ["red", "blue"], "none": False}],
    "thresholds": {"confidence": 0.6, "distance": 41.5},
    "architecture": {"class": "LabelNet", "kwargs": {"width": 16}},
}


@pytest.fixture
def judges(tmp_path):
    d = tmp_path / "judges"
    shutil.copytree(judges_dir(), d)
    return d


def test_the_shipped_manifest_validates():
    judges = load_judges_manifest(judges_dir())["judges"]
    assert sorted(judges) == ["faces", "scenes"]
    assert validate_judges_manifest({"format_version": 1, "judges": {"cars": LABELLED}}, "j.json") == {"cars": LABELLED}


@pytest.mark.parametrize("name", ["scenes.safetensors", "faces.safetensors"])
def test_a_tampered_checkpoint_is_refused_naming_the_file(judges, name):
    path = judges / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as err:
        load_judge(name.split(".")[0], judges)
    assert str(err.value).startswith(f"judge checkpoint {path} fails its checksum: sha256 ")
    assert SHIPPED["judges"][name.split(".")[0]]["sha256"] in str(err.value)


def _set(path, value):
    def change(data):
        *head, last = path
        node = data
        for key in head:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return change


@pytest.mark.parametrize(
    "change, where, message",
    [
        (_set(["judges"], []), "j.json", "'judges' must be dict, got list []"),
        (_set(["format_version"], 2), "j.json", "format_version is 2; this ConceptLang reads format_version 1"),
        (_set(["judges", "scenes"], "scenes.safetensors"), "judge 'scenes'", "must be an object"),
        (_set(["judges", "scenes", "sha256"], KeyError), "judge 'scenes'", "missing key 'sha256'"),
        (_set(["judges", "faces", "sha256"], "ABC"), "judge 'faces'", "'sha256' must be 64 lowercase hex digits, got 'ABC'"),
        (_set(["judges", "faces", "file"], "../faces.safetensors"), "judge 'faces'",
         "'file' must be a path inside the judges folder, got '../faces.safetensors'"),
        (_set(["judges", "faces", "domain"], "scenes"), "judge 'faces'", "'domain' must be the judge's key 'faces', got 'scenes'"),
        (_set(["judges", "faces", "kind"], "oracle"), "judge 'faces'", "'kind' must be one of generator, labelled, got 'oracle'"),
        (_set(["judges", "scenes", "architecture", "kwargs"], KeyError), "judge 'scenes', architecture", "missing key 'kwargs'"),
        (_set(["judges", "scenes", "metrics"], [1]), "judge 'scenes'", "'metrics' must be an object, got [1]"),
        (_set(["judges", "cars", "thresholds", "distance"], KeyError), "judge 'cars', thresholds", "missing key 'distance'"),
        (_set(["judges", "cars", "families", 0, "values"], []), "judge 'cars', families[0]", "'values' must be a non-empty list"),
        (_set(["judges", "cars", "families"], {"colour": ["red"]}), "judge 'cars'", "'families' must be list"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_key(change, where, message):
    data = copy.deepcopy(SHIPPED)
    data["judges"]["cars"] = copy.deepcopy(LABELLED)
    change(data)
    with pytest.raises(ModelError) as err:
        validate_judges_manifest(data, "j.json")
    assert str(err.value).startswith("j.json") and where in str(err.value) and message in str(err.value)


def test_load_judge_reads_through_the_validation(judges):
    data = json.loads((judges / "manifest.json").read_text())
    del data["judges"]["faces"]["file"]
    (judges / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"manifest.json, judge 'faces': missing key 'file'"):
        load_judge("faces", judges)
    (judges / "manifest.json").write_text("{\"judges\": ")
    with pytest.raises(ModelError, match=r"manifest.json: not valid JSON \(Expecting value at line 1, column 12\)"):
        load_judge("scenes", judges)


def test_writes_validate_first_and_leave_the_file_whole(judges):
    path = judges / "manifest.json"
    before = path.read_bytes()
    with pytest.raises(ModelError, match="'sha256' must be 64 lowercase hex digits"):
        update_judges_manifest(judges, _set(["judges", "scenes", "sha256"], "x"))
    with pytest.raises(ModelError, match="no entry for the 'cars' judge"):
        store_metrics(judges, "cars", {"n": 1})
    assert path.read_bytes() == before
    store_metrics(judges, "scenes", {"n": 1})
    after = json.loads(path.read_text())
    assert after["judges"]["scenes"]["metrics"] == {"n": 1} and after["judges"]["faces"] == SHIPPED["judges"]["faces"]


def test_training_refuses_a_broken_manifest_before_it_trains(tmp_path):
    out = tmp_path / "j"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format_version": 1, "judges": {"scenes": {"domain": "scenes"}}}))
    with pytest.raises(ModelError, match="judge 'scenes': missing key 'file'"):
        train_judge(TrainConfig("scenes", 1), out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
