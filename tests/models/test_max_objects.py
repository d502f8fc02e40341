import json
import shutil

from conceptlang.interface import ConceptRef
from conceptlang.models.registry import load_registry


def test_export_keeps_what_the_training_covers(tiny_models_dir, tmp_path):
    from conceptlang.models.export import export_run

    models = tmp_path / "m"
    shutil.copytree(tiny_models_dir, models)
    pos = ConceptRef("scenes", "position", params=(0.2, 0.25))
    assert load_registry(models).max_objects(pos) == 1  # unstated: one object per image
    data = json.loads((models / "manifest.json").read_text())
    data["models"][0]["max_objects"] = 2
    data["models"][0].update(sampling_guidance=3.0, guidance_interval=[0.0, 1.0], prior_below=0.02)
    data["model_sets"] = [{"name": "more", "path": "more"}]
    (models / "manifest.json").write_text(json.dumps(data))
    assert load_registry(models).max_objects(pos) == 2
    entry = export_run(tiny_models_dir.parent / "run", models)
    assert entry["max_objects"] == 2
    assert entry["sampling_guidance"] == 3.0 and entry["guidance_interval"] == [0.0, 1.0] and entry["prior_below"] == 0.02
    reg = load_registry(models)
    assert reg.max_objects(pos) == 2 and reg.describe()[0]["max_objects"] == 2
    assert [(s.name, s.path, s.selectable) for s in reg.model_sets()][0] == ("more", models / "more", True)
