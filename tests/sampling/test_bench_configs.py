"""The sampling benchmark's configurations (``old`` is the previous default's sweep exactly, whatever the
manifest's sampler section adds) and its limit, the bare network timed in the sampler's calls."""

from __future__ import annotations

import functools

import pytest

from conceptlang.compiler import compile
from conceptlang.models.registry import load_registry
from conceptlang.sampling import sample
from tests.scripts import load_script


@functools.cache
def _bench():
    return load_script("benchmarks/bench_sampling.py")


def test_old_config_runs_the_old_sweep_without_the_manifests_restarts():
    bench = _bench()
    label, kw = bench.parse_config("old")
    assert label == "old" and kw["sampler"] == "annealed" and kw["restarts"] == 0
    g = compile("circle", load_registry(None), domain="scenes")
    # A manifest whose solver ends with restarts (the scenes model's did): the old sweep must not inherit them.
    g.sampler_settings = {**g.sampler_settings, "restarts": 2, "restart_sigma": 0.03}
    res = sample(g, 1, seed=0, device="cpu", **{**kw, "n_sigmas": 3, "steps_per_sigma": 1})
    assert res.settings["restarts"] == 0 and res.settings["score_evals"] == 4  # 3 levels + the final denoise


@pytest.mark.parametrize("device_type,chunk_values,want", [
    ("cpu", 8 * 3 * 32 * 32, [8, 8, 4]),  # the CPU slices of the graph's stacked batch
    ("cpu", 3 * 3 * 32 * 32, [3] * 6 + [2]),
    ("cpu", None, [20]),  # no slicing: one call
])
def test_limit_times_the_network_in_the_samplers_calls(monkeypatch, device_type, chunk_values, want):
    import torch

    g = compile("circle", load_registry(None), domain="scenes")
    g.cpu_chunk_values = chunk_values
    model = g.models[0].impl(torch.device(device_type))
    calls = []

    def raw_eps(self, x, c, s):  # counted as the real one counts its rows
        calls.append(x.shape[0])
        self.forward_rows += x.shape[0]
        return x

    monkeypatch.setattr(type(model), "raw_eps", raw_eps)
    before = model.forward_rows
    rows = _bench().network_rows_per_second(g, 20, torch.device(device_type), repeats=2)
    assert model.forward_rows == before  # the timing is not sampling work
    assert calls == want * 3  # the warm-up and two timed repeats, each over all 20 rows
    assert rows > 0


@pytest.mark.parametrize("text,want", [
    ("new", {}),
    ("new:s_churn=0", {"s_churn": 0}),
    ("dpmpp_2m:13:max_nfe=40", {"sampler": "dpmpp_2m", "steps": 13, "max_nfe": 40}),
])
def test_other_configs_parse_to_their_overrides(text, want):
    assert _bench().parse_config(text) == (text, want)


def _row(expr, config, accuracy, precision=0.9, ips=2.0):
    return {"domain": "scenes", "operator": "single", "expression": expr, "config": config, "nfe": 39,
            "images_per_second": ips, "limit_images_per_second": None, "accuracy": accuracy,
            "accuracy_ci95": [0.0, 1.0], "tv": 0.1, "tv_floor": 0.05, "precision": precision,
            "precision_floor": 0.95, "recall": 0.8, "recall_floor": 0.9}


def _part(rows, n=16, seed=0):
    return {"environment": {"n": n, "seed": seed}, "rows": rows}


def test_merge_joins_parts_and_pools_their_samples():
    bench = _bench()
    a = _part([_row("circle", "old", 1.0, ips=1.0), _row("circle", "new", 0.9375, precision=0.8, ips=6.0)])
    b = _part([_row("red", "old", 0.875, ips=2.0), _row("red", "new", 1.0, ips=4.0)])
    merged = bench.merge_runs([a, b], ["a.json", "b.json"])
    assert [r["expression"] for r in merged["rows"]] == ["circle", "circle", "red", "red"]
    assert merged["merged_from"] == ["a.json", "b.json"] and len(merged["environments"]) == 2
    assert merged["speedup_new_vs_old"]["circle"] == 6.0 and merged["speedup_new_vs_old"]["red"] == 2.0
    assert merged["speedup_new_vs_old"]["all (geometric mean)"] == pytest.approx(12 ** 0.5)
    new = merged["pooled"]["new"]
    assert (new["satisfied"], new["samples"]) == (31, 32) and new["accuracy"] == 31 / 32
    assert new["precision"] == pytest.approx(0.85)
    lo, hi = bench.wilson(31, 32)
    assert new["accuracy_ci95"] == [lo, hi] and lo < 31 / 32 < hi
    assert merged["pooled"]["old"]["satisfied"] == 30  # 16 + 14


@pytest.mark.parametrize("parts,message", [
    ([_part([_row("circle", "old", 1.0)]), {**_part([]), "partial": True}], "partial run"),
    ([_part([_row("circle", "old", 1.0)]), _part([_row("circle", "old", 1.0)])], "in both"),
    ([_part([_row("circle", "old", 1.0)]), _part([_row("red", "old", 1.0)], n=32)], "differ in n"),
])
def test_merge_refuses_parts_that_do_not_fit(parts, message):
    with pytest.raises(SystemExit, match=message):
        _bench().merge_runs(parts, ["a.json", "b.json"])


def test_merge_option_writes_the_merged_file(tmp_path, monkeypatch, capsys):
    import json

    paths = []
    for name, rows in (("a", [_row("circle", "new", 1.0)]), ("b", [_row("red", "new", 0.5)])):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({**_part(rows), "command": f"python benchmarks/bench_sampling.py --part {name}"}))
    out = tmp_path / "merged.json"
    monkeypatch.setattr("sys.argv", ["bench_sampling.py", "--merge", *map(str, paths), "--json", str(out),
                                     "--note", "the two halves, one core each"])
    _bench().main()
    merged = json.loads(out.read_text())
    assert merged["pooled"]["new"]["satisfied"] == 24 and merged["pooled"]["new"]["samples"] == 32
    assert merged["command"] == (f"python benchmarks/bench_sampling.py --merge {paths[0]} {paths[1]} --json {out} "
                                 "--note 'the two halves, one core each'")
    assert merged["note"] == "the two halves, one core each"
    assert merged["part_commands"] == ["python benchmarks/bench_sampling.py --part a",
                                       "python benchmarks/bench_sampling.py --part b"]
    assert "new: 24 of 32 satisfied, accuracy 0.7500" in capsys.readouterr().out


def test_parts_split_the_expressions_without_overlap():
    bench = _bench()
    items = list(range(7))
    parts = [bench.part_of(items, f"{k}/3") for k in (1, 2, 3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert bench.part_of(items, "1/1") == items
    for bad in ("0/2", "3/2", "a/2", "2"):
        with pytest.raises(SystemExit, match="--part must be K/N"):
            bench.part_of(items, bad)
