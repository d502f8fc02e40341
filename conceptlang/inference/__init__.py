"""Concept inference: which concepts best explain an image, by energy.

* :mod:`conceptlang.inference.inference`: ``infer`` (one image) and ``infer_batch`` (many);
* :mod:`conceptlang.inference.calibrate`: fits the per-family readouts that inference ranks by;
* :mod:`conceptlang.inference.accuracy`: how well inference recovers generated ground truth.

    >>> from conceptlang.inference import infer
    >>> result = infer(image, load_registry(), domain="scenes")
"""

from __future__ import annotations

_LAZY = {"infer": "inference", "infer_batch": "inference", "InferenceResult": "inference"}

__all__ = list(_LAZY)


def __getattr__(name: str):  # PEP 562: importing the package does not import torch
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"conceptlang.inference.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'conceptlang.inference' has no attribute {name!r}")
