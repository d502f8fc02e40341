"""Package attributes imported on first use (PEP 562), so that importing a package stays cheap:
``conceptlang`` loads without torch, ``conceptlang.judge.validity`` without the judges' networks."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_attributes(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``name`` in ``table`` is imported from the module
    ``table[name]`` on first access and kept in the package's namespace."""

    def __getattr__(name: str):
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
