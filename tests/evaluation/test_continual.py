from conceptlang.data.scenes import CONTINUAL_FIXED
from conceptlang.evaluation.continual import CONTINUAL_EXPRESSIONS, continual_suite
from conceptlang.syntax import concepts_of


def test_continual_expressions_are_combinations_no_set_contains():
    # set 1: square & purple; set 2: purple; set 3: square. A non-square non-purple pair is new.
    suite = continual_suite()
    for e in suite.entries:
        names = {c.name for c in concepts_of(e.expr)}
        assert CONTINUAL_FIXED["shape"] not in names and CONTINUAL_FIXED["color"] not in names
    triples = [e for e in suite.entries if e.n_concepts == 3]
    assert len(triples) == len(CONTINUAL_EXPRESSIONS) and all(e.operator == "and" for e in triples)
    assert all(any(c.name == "position" for c in concepts_of(e.expr)) for e in triples)
    assert suite.domain == "scenes"


def test_shipped_continual_set_each_model_sees_one_set_and_colour_is_shape_blind_and_late():
    from conceptlang.evaluation.continual import continual_models_dir
    from conceptlang.models.registry import load_registry

    reg = load_registry(continual_models_dir())
    splits = {r["name"]: r["training"]["split"] for r in reg.describe()}
    assert splits == {"continual-position": {"continual1": 1.0}, "continual-shape": {"continual2": 1.0},
                      "continual-color": {"continual3": 1.0}}
    colour = reg.handles["continual-color"]
    assert colour.entry["sigma_range"] == [0.0, 0.2]
    # the colour model saw only squares, so it ships shape-blind: a per-pixel net with brightness blurs
    assert colour.entry["architecture"]["class"] == "PixelNet"
    assert colour.entry["training"]["config"]["arch"] == "pixel"
    assert colour.entry["architecture"]["config"]["blur_of"] == "max" and colour.entry["guidance"] == 10.0
    # 2,000 iterations from scratch, then 2,000 more at a lower learning rate (training/continual.sh)
    assert colour.entry["training"]["warm_start"] == {"from": "runs/continual-color-pixmax", "iterations": 2000}
    assert colour.entry["training"]["iterations"] == 2000 and colour.entry["training"]["config"]["lr"] == 3e-4
    assert reg.handles["continual-position"].entry["concept_weights"] == {"position": 0.5}
    impl = colour.impl("cpu")
    assert impl.sigma_range == (0.0, 0.2) and impl.fallback is reg.handles["continual-position"].impl("cpu")
    from conceptlang.models.networks import PixelNet

    assert isinstance(impl.net, PixelNet)


def test_shipped_continual_sampler_takes_one_twice_ddim_step_per_level():
    # The continual set's annealed sampler: 30 levels from 2 to 0.01, one deterministic step per
    # level of twice the DDIM step, h = 2(1 - q)·σ_min² (docs/models.md, "Sampler settings").
    import math

    from conceptlang import parse
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.evaluation.continual import continual_models_dir
    from conceptlang.models.registry import load_registry
    from conceptlang.sampling.api import resolve_settings

    reg = load_registry(continual_models_dir())
    graph = compile_expr(parse("position(0.3, 0.3) & triangle & red"), reg)
    name, s, _ = resolve_settings(graph, None, None, {})
    assert name == "annealed"
    assert (s["sigma_max"], s["sigma_min"], s["n_sigmas"], s["steps_per_sigma"]) == (2.0, 0.01, 30, 1)
    q = (0.01 / 2.0) ** (1 / 29)
    assert s["step_size"] == 3.34e-5 and abs(s["step_size"] - 2 * (1 - q) * 0.01**2) < 5e-8
    assert s["noise_scale"] == 0.0 and s["final_denoise"] is True
    assert math.isclose(q, 0.8330, abs_tol=1e-4)


def test_example_continual_suite_file_is_the_continual_suite():
    from pathlib import Path

    from conceptlang.evaluation.suites import load_suite

    path = Path(__file__).resolve().parents[2] / "examples" / "continual_suite.txt"
    from_file, built = load_suite(path), continual_suite()
    assert from_file.domain == built.domain == "scenes"
    assert [(e.text, e.tags, e.operator, e.n_concepts) for e in from_file.entries] == \
        [(e.text, e.tags, e.operator, e.n_concepts) for e in built.entries]
