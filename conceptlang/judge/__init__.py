"""Judges: classifiers trained only on generator output that read labels and validity off images.

* :mod:`conceptlang.judge.judge`: the networks, ``load_judge``, training and measurement;
* :mod:`conceptlang.judge.validity`: segmentation, the computed scenes validity check, and the
  corruption set validity is measured against.

    >>> from conceptlang.judge import load_judge
    >>> load_judge("scenes").valid(images_uint8)
"""

from __future__ import annotations

_LAZY = {"load_judge": "judge", "Judge": "judge", "judges_dir": "judge"}

__all__ = list(_LAZY)


def __getattr__(name: str):  # PEP 562: importing validity alone does not import torch
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"conceptlang.judge.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'conceptlang.judge' has no attribute {name!r}")
