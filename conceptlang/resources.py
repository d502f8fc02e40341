"""Locating packaged resources (the grammar, the shipped models) in a checkout or an installed wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _packaged_dir(package: str, checkout_dir: str) -> Path:
    # Installed wheels map grammar/ and models/ to the packages conceptlang.grammar and
    # conceptlang.shipped (see pyproject.toml); a checkout on PYTHONPATH has them at the root.
    try:
        path = Path(str(resources.files(package)))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return _ROOT / checkout_dir


def grammar_path() -> Path:
    return _packaged_dir("conceptlang.grammar", "grammar") / "concepts.lark"


def shipped_models_dir() -> Path:
    return _packaged_dir("conceptlang.shipped", "models")
