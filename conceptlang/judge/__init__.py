"""Judges: classifiers trained only on generator output that read labels and validity off images.

* :mod:`conceptlang.judge.judge`: the :class:`Judge`, reading labels and validity off images;
* :mod:`conceptlang.judge.networks`: the networks and the input they read;
* :mod:`conceptlang.judge.load`: ``load_judge`` (checkpoints under ``models/judges/``, checksum-verified
  against the manifest that :mod:`conceptlang.models.manifest` reads and writes);
* :mod:`conceptlang.judge.training`, :mod:`conceptlang.judge.augment`: training on generator output;
* :mod:`conceptlang.judge.measure`: the measured figures in the manifest;
* :mod:`conceptlang.judge.validity`: segmentation, the computed scenes validity check, and the
  corruption set validity is measured against;
* :mod:`conceptlang.judge.labelled`: a judge of any labelled image folder.

    >>> from conceptlang.judge import load_judge
    >>> load_judge("scenes").valid(images_uint8)
"""

from __future__ import annotations

from conceptlang.lazy import lazy_attributes

_LAZY = {"load_judge": "conceptlang.judge.load", "Judge": "conceptlang.judge.judge", "judges_dir": "conceptlang.judge.load"}

__all__ = list(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)  # importing the package does not import torch
