import numpy as np
import pytest

import conceptlang.data as data
from conceptlang.inference.accuracy import measure_inference, true_value
from tests.evaluation.fakes import COLORS, TOY, TemplateRegistry, render


def _fake_generate(domain, n, seed=0, split="train"):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        c = list(COLORS)[rng.integers(3)]
        x, y = rng.uniform(0.25, 0.75, size=2)
        images.append(render(c, x, y))
        lab = {f"color.{v}": v == c for v in COLORS} | {v: v == c for v in COLORS}
        lab |= {"glow": False, "glow.glow": False, "objects": [{"x": x, "y": y, "color": c}]}
        labels.append(lab)
    return np.stack(images), labels


class _WrongColourJudge:
    """Always says red, and puts the object 0.03 to the right of the truth."""

    def __init__(self, truth):
        self.truth = truth

    def labels(self, images):
        return [
            {"color.red": True, "red": True, "objects": [{"x": t["objects"][0]["x"] + 0.03, "y": t["objects"][0]["y"], "color": "red"}]}
            for t in self.truth
        ]


def test_measure_inference_on_exact_templates(monkeypatch):
    import conceptlang.inference.inference as inference

    monkeypatch.setattr(data, "generate", _fake_generate)
    monkeypatch.setattr(inference, "_SUPPORT_CACHE", {})
    _, truth = _fake_generate("toy", 12, seed=5)
    acc = measure_inference(TemplateRegistry(), "toy", n=12, seed=5, judge=_WrongColourJudge(truth), batch=5)
    assert acc.energy["color"].successes == 12
    assert acc.energy["glow"].successes == 12  # all dark: glow correctly absent
    assert max(acc.position_errors["position"]) < 0.01
    n_red = sum(t["color.red"] for t in truth)
    assert acc.judge["color"].successes == n_red
    assert acc.judge_position_errors["position"] == pytest.approx([0.03] * 12, abs=1e-9)
    j = acc.to_json()
    assert j["position"]["position"]["within_target"]["successes"] == 12
    table = acc.markdown_table()
    assert "| color | 1.00 [0.76, 1.00] | ≥ 0.95 ✓ |" in table
    assert "position | mean error 0.0" in table


def test_true_value_reads_each_kind_of_family():
    colour, glow, pos = TOY.families
    lab = {"color.blue": True, "color.red": False, "glow.glow": True, "objects": [{"x": 0.2, "y": 0.7}]}
    assert true_value(lab, colour) == "blue"
    assert true_value(lab, glow) is True
    assert true_value(lab, pos) == (0.2, 0.7)
    assert true_value({"objects": []}, pos) is None
