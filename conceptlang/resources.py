"""Locating packaged resources (the grammar, the shipped models) in a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _packaged_dir(installed_name: str, checkout_dir: str) -> Path:
    # A wheel installs grammar/ and models/ inside the package as conceptlang/grammar and
    # conceptlang/shipped (see [tool.setuptools.package-dir] in pyproject.toml); a checkout on
    # PYTHONPATH or an editable install has them at the repository root.
    installed = _PACKAGE / installed_name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / checkout_dir


def grammar_path() -> Path:
    return _packaged_dir("grammar", "grammar") / "concepts.lark"


def shipped_models_dir() -> Path:
    return _packaged_dir("shipped", "models")


def display_path(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies below it (``models/objects``), else
    absolute: how messages name a folder the user can pass back (``--models``)."""
    import os

    p = Path(os.path.abspath(path))
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)
