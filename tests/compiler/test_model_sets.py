"""Model-set selection: the compiler picks the set whose training covers the expression's objects.

These compile against real manifests (the shipped ones, and copies in tmp folders); compiling
reads only manifests, never weights.
"""

import copy
import json
import warnings

import pytest
import torch

from conceptlang.compiler import ModelSetWarning, compile
from conceptlang.errors import CompileError, ModelError, NameResolutionError
from conceptlang.models.registry import load_registry, validate_manifest
from conceptlang.resources import display_path, shipped_models_dir
from conceptlang.sampling.api import draw_chain_values

SHIPPED = shipped_models_dir()
TWO = "position(0.2, 0.25) & position(0.8, 0.75)"
THREE = "position(0.2, 0.25) & position(0.5, 0.5) & position(0.8, 0.75)"
SINGLE = [
    "circle", "circle & red", "position(0.3, 0.7)", "circle & red & large & position(0.5, 0.5)",
    "circle & ~red", "~blue", "circle | square", "red | blue",
    "position(0.2, 0.25) | position(0.8, 0.75)", "position(0.2, 0.25) & ~position(0.8, 0.75)",
    "position(0.2, 0.25) & position(0.2, 0.25)", "male & smiling", "(male & smiling) | ~black_hair",
]


def _manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write(folder, data) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(data))


def _quiet(text, registry, **opts):
    """Compile, failing on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return compile(text, registry, **opts)


def _fingerprint(g) -> tuple:
    """Everything sampling reads from a graph: leaves (model, condition), coefficients, settings."""
    return (
        g.domain, g.route, [(l.model.name, l.key) for l in g.leaves], g.linear_coefs,
        None if g.disjuncts is None else [(d.coefs, d.share) for d in g.disjuncts],
        g.sampler_settings, g.options, g.notices,
    )


@pytest.fixture(scope="module")
def shipped():
    return load_registry(SHIPPED)


@pytest.fixture
def plain_main(tmp_path):
    """The shipped main manifest without its model_sets (weights are never read)."""
    data = _manifest(SHIPPED)
    data.pop("model_sets")
    _write(tmp_path / "plain", data)
    return load_registry(tmp_path / "plain")


def test_shipped_manifests_say_what_their_training_covers(shipped):
    assert [(s.name, s.path, s.selectable) for s in shipped.model_sets()] == [("objects", SHIPPED / "objects", True)]
    entries = {e["name"]: e for e in shipped.describe()}
    assert entries["scenes-joint"]["max_objects"] == 1 and entries["faces-joint"]["max_objects"] == 1
    objects = load_registry(SHIPPED / "objects")
    assert objects.describe()[0]["max_objects"] == 2
    # a set reached through the shipped folder suggests the shipped sets, never itself
    assert [(s.name, s.selectable) for s in objects.model_sets()] == [("default", False)]


def test_two_positions_use_the_objects_set(shipped):
    g = _quiet(TWO, shipped)
    assert [m.name for m in g.models] == ["objects-joint"]
    assert g.model_set["name"] == "objects" and g.model_set["path"] == display_path(SHIPPED / "objects")
    reason = g.model_set["reason"]
    assert "places 2 objects (position(0.2, 0.25), position(0.8, 0.75))" in reason
    assert "scenes-joint" in reason and "one object per image" in reason and "up to 2 objects per image" in reason
    # the same product of experts the objects set gives on its own, with its sampler settings
    alone = _quiet(TWO, load_registry(SHIPPED / "objects"))
    assert alone.model_set is None
    assert _fingerprint(g) == _fingerprint(alone)
    assert g.sampler_settings == _manifest(SHIPPED / "objects")["models"][0]["sampler"]
    # explain and the JSON say which set and why
    assert f"model set: objects ({display_path(SHIPPED / 'objects')}), chosen because the expression places 2" in g.explain()
    assert g.to_json()["model_set"] == g.model_set


@pytest.mark.parametrize("text", SINGLE)
def test_single_object_expressions_compile_exactly_as_without_model_sets(text, shipped, plain_main):
    g = _quiet(text, shipped)
    assert g.model_set is None and "model set" not in g.explain()
    assert {m.name for m in g.models} <= {"scenes-joint", "faces-joint"}
    assert _fingerprint(g) == _fingerprint(_quiet(text, plain_main))


def test_three_positions_use_the_closest_set_and_warn(shipped):
    with pytest.warns(ModelSetWarning) as rec:
        g = compile(THREE, shipped)
    (w,) = rec
    msg = str(w.message)
    assert msg.startswith("the expression places 3 objects (position(0.2, 0.25), position(0.5, 0.5), position(0.8, 0.75)), "
                          "but no model set is trained for 3 objects per image; the closest, model set 'objects'")
    assert "up to 2 objects per image" in msg
    assert [m.name for m in g.models] == ["objects-joint"] and g.model_set["name"] == "objects"
    assert "warning: " + msg in g.notices
    with pytest.raises(CompileError) as err:
        compile(THREE, shipped, strict=True)
    assert str(err.value) == msg


def test_a_set_without_multi_object_training_warns_and_names_one(tmp_path):
    data = _manifest(SHIPPED)
    data.pop("model_sets")
    data["models"] = [e for e in data["models"] if e["name"] == "scenes-joint"]
    _write(tmp_path / "mine", data)
    reg = load_registry(tmp_path / "mine")
    with pytest.warns(ModelSetWarning) as rec:
        g = compile(TWO, reg)
    (w,) = rec
    msg = str(w.message)
    assert msg.startswith("the expression places 2 objects (position(0.2, 0.25), position(0.8, 0.75)), but "
                          f"scenes-joint ({display_path(tmp_path / 'mine')}) was trained on one object per image")
    assert msg.endswith(f"model set 'objects' ({display_path(SHIPPED / 'objects')}) serves it for up to 2 objects: "
                        f"--models {display_path(SHIPPED / 'objects')}")
    # a folder the user chose is not switched away from
    assert [m.name for m in g.models] == ["scenes-joint"] and g.model_set is None
    with pytest.raises(CompileError, match="was trained on one object per image"):
        compile(TWO, reg, strict=True)
    _quiet("circle & position(0.2, 0.25)", reg, strict=True)  # one object: nothing to say


def test_the_shipped_continual_set_warns_for_two_positions():
    reg = load_registry(SHIPPED / "continual")
    with pytest.warns(ModelSetWarning, match=r"continual-position \(.*\) was trained on one object per image.*"
                                             r"model set 'objects' .* serves it for up to 2 objects"):
        compile(TWO, reg)


def test_the_shipped_continual_set_draws_each_named_position_within_0_02():
    reg = load_registry(SHIPPED / "continual")
    g = compile("position(0.3, 0.3) & triangle & red", reg)
    assert g.options["named_positions"] == "data" and g.options["named_radius"] == 0.02
    assert g.drawn_leaves == {0: ("position",)} and g.leaves[0].label == "position(drawn near 0.3, 0.3)"
    (key, pos), = draw_chain_values(g, 64, seed=3).items()
    dist = (pos - torch.tensor([0.3, 0.3])).norm(dim=1)
    assert key == (0, "position") and float(dist.max()) <= 0.02 and len(torch.unique(pos, dim=0)) == 64
    # where no position is named, nothing is drawn: the pair keeps its three leaves
    pair = compile("circle & green", reg)
    assert pair.drawn_leaves == {} and [leaf.label for leaf in pair.leaves] == ["shape.circle", "color.green", "prior"]


def test_a_missing_family_is_an_error_that_names_a_set_with_it():
    reg = load_registry(SHIPPED / "continual")  # shape, colour, position: no size
    with pytest.raises(NameResolutionError) as err:
        compile("large & circle", reg)
    assert err.value.message == (f"unknown concept 'large'; model set 'default' ({display_path(SHIPPED)}) serves it: "
                                 f"--models {display_path(SHIPPED)}")
    assert err.value.location is not None and err.value.location.column == 1
    with pytest.raises(NameResolutionError) as err:  # a typo nobody serves keeps its own message
        compile("circel", reg)
    assert err.value.message == "unknown concept 'circel'; did you mean 'circle'?"


def test_a_listed_set_that_serves_what_the_main_set_lacks_is_chosen(tmp_path):
    data = _manifest(SHIPPED)
    data["models"] = [e for e in data["models"] if e["name"] == "faces-joint"]
    data["model_sets"] = [{"name": "scenes", "path": "scenes"}]
    _write(tmp_path / "m", data)
    scenes = _manifest(SHIPPED)
    scenes.pop("model_sets")
    scenes["models"] = [e for e in scenes["models"] if e["name"] == "scenes-joint"]
    _write(tmp_path / "m" / "scenes", scenes)
    g = _quiet("circle & red", load_registry(tmp_path / "m"))
    assert [m.name for m in g.models] == ["scenes-joint"]
    assert g.model_set["name"] == "scenes" and "do not serve 'circle & red'" in g.model_set["reason"]


def test_a_listed_set_that_is_missing_is_an_error_only_when_needed(tmp_path):
    data = _manifest(SHIPPED)
    _write(tmp_path / "m", data)  # lists models/objects, which this folder does not have
    reg = load_registry(tmp_path / "m")
    _quiet("circle & red", reg)
    with pytest.raises(ModelError, match=r"model set 'objects': no model manifest at .*objects"):
        compile(TWO, reg)


def test_registries_without_the_hooks_are_not_checked():
    from conceptlang.models.analytic import GaussianRegistry

    reg = GaussianRegistry()
    assert not hasattr(reg, "max_objects") and not hasattr(reg, "model_sets")
    g = _quiet("red & ~green", reg)
    assert g.model_set is None and g.to_json()["model_set"] is None


@pytest.mark.parametrize(
    "change,where,message",
    [
        (lambda d: d["models"][0].__setitem__("max_objects", 0), "model 'faces-joint'", "'max_objects' must be an integer ≥ 1"),
        (lambda d: d["models"][0].__setitem__("max_objects", True), "model 'faces-joint'", "'max_objects' must be an integer ≥ 1"),
        (lambda d: d["models"][0].__setitem__("max_objects", 2.0), "model 'faces-joint'", "'max_objects' must be an integer ≥ 1"),
        (lambda d: d["models"][0].__setitem__("max_objects", "2"), "model 'faces-joint'", "'max_objects' must be an integer ≥ 1"),
        (lambda d: d.__setitem__("model_sets", {"objects": "objects"}), "m.json", "'model_sets' must be a list"),
        (lambda d: d.__setitem__("model_sets", ["objects"]), "model_sets[0]", "must be an object with 'name' and 'path'"),
        (lambda d: d.__setitem__("model_sets", [{"path": "objects"}]), "model_sets[0]", "missing key 'name'"),
        (lambda d: d.__setitem__("model_sets", [{"name": "o", "path": "../elsewhere"}]), "model_sets[0]", "'path' must be a folder inside"),
        (lambda d: d.__setitem__("model_sets", [{"name": "o", "path": "/abs"}]), "model_sets[0]", "'path' must be a folder inside"),
        (lambda d: d.__setitem__("model_sets", [{"name": "o", "path": "."}]), "model_sets[0]", "'path' must be a folder inside"),
        (lambda d: d.__setitem__("model_sets", [{"name": "o", "path": "a"}, {"name": "o", "path": "b"}]), "model_sets[1]",
         "'name' must be a distinct non-empty name"),
        (lambda d: d.__setitem__("model_sets", [{"name": "o", "path": "a", "max": 2}]), "model_sets[0]", "unknown key(s) max"),
        (lambda d: d.__setitem__("model_sets", [{"name": "o", "path": "a", "about": 3}]), "model_sets[0]", "'about' must be a string"),
    ],
)
def test_manifest_fields_are_validated(change, where, message):
    data = copy.deepcopy(_manifest(SHIPPED))
    change(data)
    with pytest.raises(ModelError) as err:
        validate_manifest(data, "m.json")
    assert where in str(err.value) and message in str(err.value)


def test_valid_fields_pass():
    data = copy.deepcopy(_manifest(SHIPPED))
    data["models"][0]["max_objects"] = 3
    data["model_sets"].append({"name": "more", "path": "sets/more"})
    assert len(validate_manifest(data, "m.json")) == 2
