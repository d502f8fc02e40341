"""Continual learning (paper §4.4): concepts learned from different data sets still compose.

The continual model set (``models/continual``) has a position model trained on set 1 only
(square, purple, large; position varies), a shape model trained on set 2 only (purple, large;
shape varies) and a colour model trained on set 3 only (square, large; colour varies). An
expression ``position(x, y) & shape & color`` with a shape other than square and a colour other
than purple is a combination no training set contains; its judged accuracy is the measure.
"""

from __future__ import annotations

from pathlib import Path

from conceptlang.evaluation.results import SuiteResult
from conceptlang.evaluation.run import evaluate_suite
from conceptlang.evaluation.suites import Suite, SuiteEntry, count_concepts, operator_class, parse_entry_text

# Each triple is in none of the three sets: set 1 is all square and purple, set 2 all purple,
# set 3 all square, so any non-square shape with a non-purple colour is new.
CONTINUAL_EXPRESSIONS: tuple[str, ...] = (
    "position(0.3, 0.3) & triangle & red",
    "position(0.7, 0.3) & circle & green",
    "position(0.3, 0.7) & triangle & blue",
    "position(0.7, 0.7) & circle & yellow",
    "position(0.5, 0.5) & triangle & cyan",
    "position(0.3, 0.5) & circle & blue",
)
# Shape & colour pairs that no set contains (set 2 is all purple, set 3 all square).
CONTINUAL_PAIRS: tuple[str, ...] = (
    "circle & green",
    "triangle & blue",
)


def continual_models_dir() -> Path:
    from conceptlang.resources import shipped_models_dir

    return shipped_models_dir() / "continual"


def continual_suite(expressions=CONTINUAL_EXPRESSIONS + CONTINUAL_PAIRS) -> Suite:
    entries = []
    for text in expressions:
        expr = parse_entry_text(text)
        tags = ("position-shape-color",) if count_concepts(expr) == 3 else ("pair",)
        entries.append(SuiteEntry(text, text, expr, operator_class(expr), count_concepts(expr), tags))
    return Suite(tuple(entries), domain="scenes", path="continual")


def evaluate_continual(registry=None, n: int = 64, seed: int = 0, device: str = "auto", grid_dir=None, **kw) -> SuiteResult:
    """Evaluate the continual suite on the continual model set (loaded from models/continual by default)."""
    if registry is None:
        from conceptlang.models.registry import load_registry

        registry = load_registry(continual_models_dir())
    return evaluate_suite(continual_suite(), registry, n=n, seed=seed, device=device, grid_dir=grid_dir, **kw)
