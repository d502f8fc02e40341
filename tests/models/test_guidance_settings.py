"""GuidanceSettings: the one reading of a manifest entry's guidance keys, shared by loading,
``conceptlang models`` and ``explain``."""

from __future__ import annotations

from conceptlang.models.manifest import SAMPLING_GUIDANCE_KEYS, GuidanceSettings
from conceptlang.models.registry import load_registry


def test_every_key_is_read():
    g = GuidanceSettings.of_entry({
        "guidance": 5, "sampling_guidance": 2, "guidance_interval": [0.3, 100], "prior_below": 0.02,
        "autoguide": {"file": "g.safetensors", "sha256": "0" * 64, "weight": 1.5, "interval": [0, 0.3]},
        "mirror": {"below": 0.3, "reflect": ["position.x"]},
    })
    assert g == GuidanceSettings(guidance=5.0, sampling_guidance=2.0, interval=(0.3, 100.0), prior_below=0.02,
                                 autoguide_weight=1.5, autoguide_interval=(0.0, 0.3), mirror_below=0.3,
                                 mirror_reflect=("position.x",))
    assert g.sampling_weight == 2.0 and g.guided
    assert g.describe() == ("w = 2 at 0.3 ≤ σ ≤ 100 (the plain conditional outside), autoguided (weight 1.5); "
                            "below σ 0.02 its prior alone; below σ 0.3 averaged with its mirror image "
                            "(position.x reflected); energies (infer) w = 5")
    # the keys export carries over are the ones read here, besides ``guidance`` itself
    assert set(SAMPLING_GUIDANCE_KEYS) == {"sampling_guidance", "guidance_interval", "prior_below", "prior_keeps",
                                           "autoguide", "mirror"}
    kept = GuidanceSettings.of_entry({"guidance": 2, "prior_below": 0.02, "prior_keeps": ["color"]})
    assert kept.prior_keeps == ("color",)
    assert kept.describe() == "w = 2; below σ 0.02 its color condition alone, unguided"


def test_defaults_are_the_plain_conditional():
    g = GuidanceSettings.of_entry({})
    assert g == GuidanceSettings() and g.sampling_weight == 1.0 and not g.guided
    assert GuidanceSettings.of_entry({"guidance": 3}).sampling_weight == 3.0
    assert GuidanceSettings.of_entry({"prior_below": 0.02}).guided  # w = 1, but the last levels are the prior's
    assert GuidanceSettings.of_entry({"autoguide": {"weight": 2}}).describe() == "w = 1, autoguided (weight 2)"


def test_a_loaded_model_holds_what_its_entry_states():
    reg = load_registry()
    for name in ("scenes-joint", "faces-joint"):
        handle = reg.handles[name]
        assert handle.impl("cpu").guidance_settings == GuidanceSettings.of_entry(handle.entry)
    assert reg.handles["scenes-joint"].impl("cpu").guidance_settings == GuidanceSettings(
        guidance=5.0, sampling_guidance=2.0, interval=(0.3, 100.0), prior_below=0.03, prior_keeps=("color",),
        mirror_below=0.3, mirror_reflect=("position.x",),
        mirror_turns=((("shape", ("circle", "square")),), ("position.y",), ("position.x", "position.y")))
    row = next(r for r in reg.describe() if r["name"] == "scenes-joint")
    assert {k: row[k] for k in ("guidance", "sampling_guidance", "guidance_interval", "prior_below", "prior_keeps")} == {
        "guidance": 5.0, "sampling_guidance": 2.0, "guidance_interval": [0.3, 100.0], "prior_below": 0.03,
        "prior_keeps": ["color"]}
