"""benchmarks/make_results.py assembles the page from its parts (fake pipeline: no models needed)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import conceptlang.judge.load as judge_mod
import conceptlang.models.registry as registry_mod
from tests.evaluation.fakes import PixelJudge, install_fake_pipeline

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_results(monkeypatch):
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "benchmarks" / "make_results.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_results", mod)  # worker processes pickle its functions by name
    spec.loader.exec_module(mod)
    install_fake_pipeline(monkeypatch, plan=lambda text, n: [(1, 1, 0)] * n, objects=2)
    monkeypatch.setattr(registry_mod, "load_registry", lambda models_dir=None: None)
    monkeypatch.setattr(judge_mod, "load_judge", lambda domain, directory=None: PixelJudge())
    return mod


def test_page_is_assembled_and_marked(make_results, tmp_path):
    docs = tmp_path / "docs"
    assert make_results.main(["--quick", "--docs", str(docs), "--only", "suites,objects,venn", "--limit", "2",
                              "--jobs", "1"]) == 0
    md = (docs / "results.md").read_text()
    assert "SMOKE TEST" in md and "INCOMPLETE" not in md
    assert "Parts not run (`--only`): inference, continual." in md
    assert "python benchmarks/make_results.py --quick --docs" in md
    assert md.index("## 1. Evaluation suites") < md.index("### Scenes") < md.index("### Faces") < md.index("## 4.")
    assert "## 1. Evaluation suites" in md and "## 4. Object-level composition" in md and "## 5. Nested" in md
    # object layouts: PixelJudge puts two objects at (0.25, 0.5), (0.75, 0.5): only the third layout matches
    assert "| `position(0.25, 0.5) & position(0.75, 0.5)` | 1.00 | 1.00 | 1.00 [0.51, 1.00] |" in md
    # the page names the model set it ran on (the shipped object-level set once it exists)
    from conceptlang.evaluation.objects import objects_registry
    where = objects_registry()[1].relative_to(ROOT)
    assert f"One position model conditioned on two positions at once (models `{where}`); n = 4 per layout" in md
    data = json.loads((docs / "results.json").read_text())
    assert data["complete"] is True
    assert set(data["parts"]) == {"suite_scenes", "suite_faces", "objects", "venn_scenes", "venn_faces"}
    assert len(data["parts"]["suite_scenes"]["results"]) == 2
    # the record names files inside the repository by their repository path, not this machine's
    assert data["parts"]["suite_scenes"]["suite"] == "examples/scenes_suite.txt"
    assert data["parts"]["suite_faces"]["suite"] == "examples/faces_suite.txt"
    assert data["parts"]["objects"]["layouts"][0]["grid"] == str(docs / "images" / "results_objects_0.png")
    for name in ("results_scenes_suite.png", "results_faces_suite.png", "results_venn_scenes.png", "results_objects_0.png"):
        assert (docs / "images" / name).stat().st_size > 100


def test_unknown_part_is_a_usage_error(make_results, tmp_path):
    with pytest.raises(SystemExit) as exc:
        make_results.main(["--only", "suites,bogus", "--docs", str(tmp_path)])
    assert exc.value.code == 2


def test_worker_processes_and_failures(make_results, tmp_path, monkeypatch):
    def boom(dom, args, images):
        raise RuntimeError("no such model")

    monkeypatch.setitem(make_results.TASKS, "inference", boom)
    docs = tmp_path / "docs"
    # --device cpu: forked workers inherit the fake pipeline (on a CUDA machine "auto" would spawn them)
    assert make_results.main(["--quick", "--docs", str(docs), "--only", "suites,inference", "--limit", "1",
                              "--jobs", "2", "--device", "cpu"]) == 0
    md = (docs / "results.md").read_text()
    assert "**inference scenes: failed** with `RuntimeError: no such model`" in md
    assert "| `circle` | single | 1 | single |" in md and "| `male` | single | 1 | single |" in md
    data = json.loads((docs / "results.json").read_text())
    assert data["complete"] is True and data["parts"]["inference_faces"]["failed"].startswith("RuntimeError")


def test_workers_that_sample_on_cuda_are_spawned(make_results):
    assert make_results.start_method("cuda") == make_results.start_method("cuda:1") == "spawn"
    assert make_results.start_method("cpu") == "fork"


def test_page_carries_the_distribution_figures(make_results, tmp_path, monkeypatch):
    import conceptlang.evaluation.distribution as D

    def fixed(expr, domain, images, labels, ok, judge, seed, n_objects=None):
        n = len(images)
        return D.DistributionMetrics(
            n_samples=n, n_ok=int(ok.sum()), n_real=n, reference_labels=100, reference_drawn=900,
            fidelity=[D.FamilyFidelity("color", 0.25, 0.05, {"red": 1.0}, {"red": 0.75, "blue": 0.25})],
            precision=0.95, recall=0.5, kid=0.125, precision_floor=1.0, recall_floor=0.75, kid_floor=0.0,
            near_dup=0.25, near_dup_floor=0.0)

    class NamesJudge(PixelJudge):  # the first two entries of each suite hold of every sample
        def labels(self, images):
            return [{"circle": True, "square": True, "male": True, "smiling": True, "objects": []} for _ in images]

    monkeypatch.setattr(D, "distribution_metrics", fixed)
    monkeypatch.setattr(judge_mod, "load_judge", lambda domain, directory=None: NamesJudge())
    docs = tmp_path / "docs"
    assert make_results.main(["--quick", "--docs", str(docs), "--only", "suites", "--limit", "2", "--jobs", "1"]) == 0
    md = (docs / "results.md").read_text()
    assert "| scenes: attribute TV, pooled (floor) | 0.25 (0.05) | ≤ 0.10 |" in md
    assert "| scenes: attribute TV, worst (floor) | 0.25 (0.05): `circle`, color | ≤ 0.20 |" in md
    assert "| faces: attribute TV, worst (floor) | 0.25 (0.05): `male`, color | ≤ 0.20 |" in md
    assert "| scenes: precision (floor) | 0.950 (1.000) | ≥ 0.90 |" in md
    assert "| scenes: recall (floor) | 0.500 (0.750) | ≥ 0.80 |" in md
    assert "| scenes: near-duplicates (floor) | 0.250 (0.000) | ≤ 0.01 |" in md
    assert ("| `circle` | 4/4 | 0.25 | 0.25 (0.05) | color 0.25 | 0.95 (1.00) | 0.50 (0.75) | 0.12 (0.00) "
            "| 0.25 (0.00) |") in md
    assert "| scenes | 2 | 0.25 (0.05) ✗ | 0.25 (0.05) ✗: `circle`, color | 0.950 (1.000) ✓ | 0.500 (0.750) ✗ |" in md
    assert "![scenes: samples beside generator data](images/results_scenes_compare.png)" in md
    assert (docs / "images" / "results_faces_compare.png").stat().st_size > 100
    data = json.loads((docs / "results.json").read_text())
    assert data["parts"]["suite_scenes"]["distribution"]["tv_pooled"] == 0.25
    assert data["parts"]["suite_scenes"]["results"][0]["distribution"]["recall"] == 0.5


SMALL = ["--n-eval", "2", "--n-objects", "2", "--n-continual", "2", "--n-venn", "1", "--n-infer", "2", "--jobs", "1",
         "--device", "cpu"]


def test_merge_reruns_one_part_and_keeps_the_others(make_results, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    assert make_results.main(["--docs", str(docs), *SMALL]) == 0
    first = json.loads((docs / "results.json").read_text())
    first_md = (docs / "results.md").read_text()
    assert first["complete"] is True and set(first["page"]["sections"]) == set(make_results.PARTS)

    def other_objects(sub, args, images):  # the rerun part measures something else
        part = make_results.Part("objects")
        part.lines = ["rerun marker", ""]
        part.headline = [("object-level: rerun", "0.50", "≥ 0.80")]
        part.record = {"rerun": True}
        part.timings = {"objects": 1.0}
        return part

    monkeypatch.setitem(make_results.TASKS, "objects", other_objects)
    assert make_results.main(["--docs", str(docs), "--only", "objects", "--merge", *SMALL]) == 0
    md = (docs / "results.md").read_text()
    data = json.loads((docs / "results.json").read_text())
    assert ("> Carried over unchanged (`--merge`): **suites, inference, continual, venn**, from the run of "
            f"{first['started']} (commit {first['commit']}; manifests sha256 {first['manifests']}): "
            f"`{first['command']}`.") in md
    for p in ("suites", "inference", "continual", "venn"):
        assert data["page"]["sections"][p] == first["page"]["sections"][p]
    assert set(data["carried_from"]) == {"suites:scenes", "suites:faces", "inference:scenes", "inference:faces",
                                         "continual", "venn:scenes", "venn:faces"}
    assert all(src["command"] == first["command"] for src in data["carried_from"].values())
    assert "(objects 1 s); the carried parts took suite scenes" in md
    assert "Parts not run" not in md and "rerun marker" in md and "| object-level: rerun | 0.50 | ≥ 0.80 |" in md
    # every other part's section and summary row as the first page had them, in page order
    for p in ("suites", "inference", "continual", "venn"):
        assert "\n".join(first["page"]["sections"][p]) in md and "\n".join(first["page"]["sections"][p]) in first_md
    assert "\n".join(first["page"]["sections"]["objects"]) not in md
    heads = [md.index(t) for t in ("## 1.", "## 2.", "## 3.", "## 4.", "rerun marker", "## 5.")]
    assert heads == sorted(heads)
    rows = [line for line in first_md.splitlines() if line.startswith("| ") and " | " in line
            and not line.startswith("| object-level") and line in first_md[:first_md.index("## 1.")]]
    summary = md[:md.index("## 1.")]
    assert rows and all(r in summary for r in rows)
    assert set(data["parts"]) == set(first["parts"]) and data["parts"]["objects"] == {"rerun": True}
    assert data["parts"]["suite_scenes"] == first["parts"]["suite_scenes"]
    # merging again keeps where each carried part came from
    assert make_results.main(["--docs", str(docs), "--only", "objects", "--merge", *SMALL]) == 0
    again = json.loads((docs / "results.json").read_text())
    assert again["carried_from"]["suites:faces"]["started"] == first["started"]


def _suite_rows(record: dict) -> list[tuple]:
    return [(r["expression"], r["n"], r["accuracy"]) for r in record["results"]]


def test_one_suite_reruns_in_chunks_and_the_other_is_carried(make_results, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    assert make_results.main(["--docs", str(docs), *SMALL]) == 0
    first = json.loads((docs / "results.json").read_text())
    first_md = (docs / "results.md").read_text()
    scenes_lines = first["page"]["tasks"]["suites:scenes"]["lines"]
    assert scenes_lines[0].startswith("### Scenes") and "\n".join(scenes_lines) in first_md

    assert make_results.main(["--docs", str(docs), "--only", "suites:faces", "--suite-chunks", "3", "--merge",
                              *SMALL]) == 0
    md = (docs / "results.md").read_text()
    data = json.loads((docs / "results.json").read_text())
    assert ("> Carried over unchanged (`--merge`): **suites:scenes, inference, continual, objects, venn**, "
            f"from the run of {first['started']}") in md
    assert "\n".join(scenes_lines) in md and "INCOMPLETE" not in md and data["complete"] is True
    # the faces suite measured in three chunks: the same rows, in suite order, as measured whole
    assert _suite_rows(data["parts"]["suite_faces"]) == _suite_rows(first["parts"]["suite_faces"])
    assert len(_suite_rows(first["parts"]["suite_faces"])) > 3
    assert "(in 3 chunks of the suite, run side by side: the seconds are their sum)" in md
    assert md.index("### Scenes") < md.index("### Faces") < md.index("## 2.")
    assert data["parts"]["suite_scenes"] == first["parts"]["suite_scenes"]
    assert "suites:faces" not in data["carried_from"] and "suites:scenes" in data["carried_from"]


def test_a_failed_chunk_fails_its_suite_only(make_results, tmp_path, monkeypatch):
    real = make_results.suite_chunk

    def flaky(dom, args, chunk=0, chunks=1):
        if dom == "faces" and chunk == 1:
            raise RuntimeError("chunk lost")
        return real(dom, args, chunk, chunks)

    monkeypatch.setattr(make_results, "suite_chunk", flaky)
    docs = tmp_path / "docs"
    assert make_results.main(["--docs", str(docs), "--only", "suites", "--suite-chunks", "2", *SMALL]) == 0
    md = (docs / "results.md").read_text()
    assert "**suites faces: failed** with `RuntimeError: chunk lost`" in md and "### Scenes" in md
    data = json.loads((docs / "results.json").read_text())
    assert data["parts"]["suite_faces"]["failed"] == "RuntimeError: chunk lost" and data["complete"] is True


@pytest.mark.parametrize("bad", [["--only", "suites:moon"], ["--only", "objects:faces"], ["--suite-chunks", "0"]])
def test_bad_task_selection_is_a_usage_error(make_results, tmp_path, bad):
    with pytest.raises(SystemExit) as exc:
        make_results.main(["--docs", str(tmp_path), *bad])
    assert exc.value.code == 2


def test_merge_needs_a_complete_recorded_page(make_results, tmp_path):
    docs = tmp_path / "docs"
    with pytest.raises(SystemExit) as exc:  # no page yet
        make_results.main(["--docs", str(docs), "--only", "objects", "--merge", *SMALL])
    assert exc.value.code == 2
    assert make_results.main(["--docs", str(docs), "--only", "suites,venn", *SMALL]) == 0  # a partial page
    with pytest.raises(SystemExit) as exc:
        make_results.main(["--docs", str(docs), "--only", "objects", "--merge", *SMALL])
    assert exc.value.code == 2
    (docs / "results.json").write_text("[]")  # a record that is not an object
    with pytest.raises(SystemExit) as exc:
        make_results.main(["--docs", str(docs), "--only", "objects", "--merge", *SMALL])
    assert exc.value.code == 2
    assert make_results.main(["--quick", "--docs", str(docs)]) == 0  # a smoke test
    with pytest.raises(SystemExit) as exc:
        make_results.main(["--docs", str(docs), "--only", "objects", "--merge", *SMALL])
    assert exc.value.code == 2


def test_a_carried_task_is_flagged_only_when_its_own_models_changed(make_results, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    assert make_results.main(["--docs", str(docs), *SMALL]) == 0
    first = json.loads((docs / "results.json").read_text())
    digests = {t: rec["models"] for t, rec in first["page"]["tasks"].items()}
    assert len(set(digests.values())) >= 3  # scenes, faces, continual, objects differ
    real = make_results._task_digest
    monkeypatch.setattr(make_results, "_task_digest",  # the faces models change; nothing else
                        lambda models, part, sub: "changed" if sub == "faces" else real(models, part, sub))
    assert make_results.main(["--docs", str(docs), "--only", "objects", "--merge", *SMALL]) == 0
    md = (docs / "results.md").read_text()
    assert ("— **the manifests of the models of suites:faces, inference:faces, venn:faces have changed since**."
            in md)
    data = json.loads((docs / "results.json").read_text())
    assert data["page"]["tasks"]["suites:faces"]["models"] == digests["suites:faces"]  # as its run recorded
    assert data["page"]["tasks"]["objects"]["models"] == digests["objects"]


def test_task_digests_follow_the_entries_a_task_samples_with(make_results, tmp_path):
    import shutil

    shutil.copytree(ROOT / "models", tmp_path / "m", ignore=shutil.ignore_patterns("*.safetensors"))
    models = str(tmp_path / "m")
    before = {(p, s): make_results._task_digest(models, p, s) for p, s in make_results.SCHEDULE}
    path = tmp_path / "m" / "manifest.json"
    data = json.loads(path.read_text())
    faces = next(e for e in data["models"] if e["domain"] == "faces")
    faces["metrics"] = {"changed": True}  # a measurement: no task's digest moves
    path.write_text(json.dumps(data))
    assert {(p, s): make_results._task_digest(models, p, s) for p, s in make_results.SCHEDULE} == before
    faces["guidance"] = 7.0  # a setting: the faces tasks' digests move, no other
    path.write_text(json.dumps(data))
    after = {(p, s): make_results._task_digest(models, p, s) for p, s in make_results.SCHEDULE}
    assert {k for k in before if before[k] != after[k]} == {("suites", "faces"), ("inference", "faces"),
                                                            ("venn", "faces")}


def _legacy_page(docs, commit: str, manifests: str) -> None:
    """Rewrite the page's record as a run before per-task digests wrote it: no task's own models."""
    path = docs / "results.json"
    data = json.loads(path.read_text())
    for rec in data["page"]["tasks"].values():
        del rec["models"]
    data["commit"], data["manifests"] = commit, manifests
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("commit,recorded,flagged", [
    # the commit's manifests are the run's: only the tasks whose own entries changed are flagged
    ("abc1234", "commit", "— **the manifests of the models of suites:faces, inference:faces, venn:faces have changed since**."),
    # the commit's manifests are not the run's (another digest), or models/ differed from the commit:
    # every task is checked against all manifests, as before
    ("abc1234", "other", "— **the models' manifests have changed since**."),
    ("abc1234 (models/ differs from the commit)", "commit", "— **the models' manifests have changed since**."),
    ("--output=x", "commit", "— **the models' manifests have changed since**."),  # never passed to git
])
def test_a_task_recorded_before_its_own_digest_is_checked_against_its_commit(make_results, tmp_path, monkeypatch,
                                                                            commit, recorded, flagged):
    docs = tmp_path / "docs"
    assert make_results.main(["--docs", str(docs), *SMALL]) == 0
    now = make_results._manifest_texts(None)
    then = dict(now)
    data = json.loads(now["manifest.json"])
    next(e for e in data["models"] if e["domain"] == "faces")["guidance"] = 7.0  # a faces setting, since changed
    then["manifest.json"] = json.dumps(data).encode()
    asked = []
    real = make_results._manifest_texts

    def texts(models, at=None):
        asked.append(at)
        return real(models) if at is None else then

    monkeypatch.setattr(make_results, "_manifest_texts", texts)
    _legacy_page(docs, commit, make_results._digest_of_manifests(then) if recorded == "commit" else "0" * 12)
    assert make_results.main(["--docs", str(docs), "--only", "objects", "--merge", *SMALL]) == 0
    md = (docs / "results.md").read_text()
    assert md.count("> Carried over unchanged") == 1 and flagged in md
    # read once for all the tasks of its run; a commit that differed, or no bare hash, is never read
    assert asked.count(commit) == (commit == "abc1234")
    carried = json.loads((docs / "results.json").read_text())["page"]["tasks"]
    if recorded == "commit" and commit == "abc1234":  # the derived digests are kept for later merges
        assert carried["suites:scenes"]["models"] == make_results._task_digest(None, "suites", "scenes")
        assert carried["suites:faces"]["models"] == make_results._entries_digest(then, "suites", "faces")
        assert carried["suites:faces"]["models"] != make_results._task_digest(None, "suites", "faces")
    else:
        assert all("models" not in carried[t] for t in carried if t != "objects")


def test_manifests_at_a_commit_are_read_with_git(make_results):
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    texts = make_results._manifest_texts(None, head.stdout.strip())
    committed = subprocess.run(["git", "show", "HEAD:models/manifest.json"], cwd=ROOT, capture_output=True).stdout
    assert texts["manifest.json"] == committed and set(texts) == set(make_results.MANIFESTS)
    assert make_results._manifest_texts(None, "0" * 40)["manifest.json"] is None  # no such commit
    assert make_results._manifest_texts(str(Path("/") / "elsewhere"), head.stdout.strip()) is None  # outside the repository
