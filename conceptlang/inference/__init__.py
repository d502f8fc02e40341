"""Concept inference: which concepts best explain an image, by energy.

* :mod:`conceptlang.inference.inference`: ``infer`` (one image) and ``infer_batch`` (many);
* :mod:`conceptlang.inference.calibrate`: fits the per-family readouts that inference ranks by;
* :mod:`conceptlang.inference.accuracy`: how well inference recovers generated ground truth.

    >>> from conceptlang.inference import infer
    >>> result = infer(image, load_registry(), domain="scenes")
"""

from __future__ import annotations

from conceptlang.lazy import lazy_attributes

_LAZY = {name: "conceptlang.inference.inference" for name in ("infer", "infer_batch", "InferenceResult")}

__all__ = list(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)  # importing the package does not import torch
