"""Judges: classifiers trained only on generator output that read labels and validity off images.

* :mod:`conceptlang.judge.judge`: the networks, ``load_judge``, training and measurement;
* :mod:`conceptlang.judge.validity`: segmentation, the computed scenes validity check, and the
  corruption set validity is measured against.

    >>> from conceptlang.judge import load_judge
    >>> load_judge("scenes").valid(images_uint8)
"""

from __future__ import annotations

from conceptlang.lazy import lazy_attributes

_LAZY = {"load_judge": "conceptlang.judge.judge", "Judge": "conceptlang.judge.judge", "judges_dir": "conceptlang.judge.judge"}

__all__ = list(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)  # importing the package does not import torch
