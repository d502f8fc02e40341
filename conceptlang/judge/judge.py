"""The judge: reads labels (the shared label format) and validity off uint8 images of one domain.

    >>> from conceptlang.judge import load_judge
    >>> judge = load_judge("scenes")
    >>> labels = judge.labels(images_uint8)     # list of label dicts in the shared format
    >>> ok = judge.valid(images_uint8)          # bool (N,): a well-formed image of the domain?

* ``scenes``: segmentation first (:mod:`conceptlang.judge.validity`: background from the
  border, 8-connected components), then the object network reads shape, colour and size from a
  24×24 crop around each object (other objects blanked), so two-object scenes get one label set per
  object. Position is computed: the object's coverage-weighted centroid, moved up by h/6 when the
  network says triangle (the label is the centre of the shape's box). Validity is the computed check.
* ``faces``: the face network on the whole 32×32 image. Validity is its head, trained to tell real
  faces (clean, noisy or blurred) from the corruption set, together with the computed generator fit
  of :mod:`conceptlang.judge.validity`, started from the heads' reading, which fails broken faces
  the head passes (a beard or side hair in another colour than the cap, glasses or a smile drawn
  part-way, a muddy low-contrast face).

The networks are :mod:`conceptlang.judge.networks`; loading and the manifest
:mod:`conceptlang.judge.load`; training :mod:`conceptlang.judge.training`; the measured figures
:mod:`conceptlang.judge.measure`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from conceptlang.data import faces as fc
from conceptlang.data import scenes as sc
from conceptlang.errors import DataError
from conceptlang.judge import validity as V
from conceptlang.judge.networks import JUDGE_SIZE, check_images, scene_crops, to_input


class Judge:
    """Reads labels (shared format) and validity off uint8 (N, H, W, 3) images of one domain."""

    def __init__(self, domain: str, net: nn.Module, entry: dict | None = None, batch_size: int = 512):
        self.domain = domain
        self.net = net.eval()
        self.entry = entry or {}
        self.batch_size = batch_size

    @property
    def metrics(self) -> dict:
        return dict(self.entry.get("metrics", {}))

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for s in range(0, len(x), self.batch_size):
                res = self.net(to_input(x[s : s + self.batch_size]))
                for k, v in res.items():
                    outs.setdefault(k, []).append(v.numpy())
        return {k: np.concatenate(v) for k, v in outs.items()}

    # -- scenes
    def _scene_objects(self, imgs: np.ndarray) -> tuple[list[V.SceneAnalysis], list[list[dict]]]:
        analyses = V.analyse_scenes(imgs, with_shapes=False)
        crops, owners = scene_crops(imgs, analyses)
        objects: list[list[dict]] = [[] for _ in range(len(imgs))]
        if crops:
            out = self._run(np.stack(crops))
            shape, color, size = (out[f].argmax(1) for f in ("shape", "color", "size"))
            for c, (i, k) in enumerate(owners):
                obj = analyses[i].objects[k]
                cx, cy = obj.centroid
                if shape[c] == 2:  # triangle: centroid sits h/6 below the box centre
                    cy -= sc.TRIANGLE_HEIGHT * sc.EXTENT_ARRAY[size[c]] * JUDGE_SIZE / 6
                objects[i].append({
                    "x": round(float(cx / JUDGE_SIZE), 4), "y": round(float(cy / JUDGE_SIZE), 4),
                    "shape": sc.SHAPES[shape[c]], "color": sc.COLORS[color[c]], "size": sc.SIZES[size[c]],
                })
        return analyses, objects

    def labels(self, images: np.ndarray) -> list[dict]:
        """Judged labels per image: qualified + bare booleans and ``objects`` (shared format)."""
        imgs = check_images(images)
        if self.domain == "scenes":
            _, objects = self._scene_objects(imgs)
            out = []
            for objs in objects:
                lab: dict[str, Any] = {}
                for fam, values in sc.DISCRETE_FAMILIES:
                    present = {o[fam] for o in objs}
                    for v in values:
                        lab[f"{fam}.{v}"] = lab[v] = v in present
                lab["objects"] = objs
                out.append(lab)
            return out
        res = self._run(imgs)
        hair = res["hair"].argmax(1)
        out = []
        for i in range(len(imgs)):
            flags = {h: bool(hair[i] == j) for j, h in enumerate(fc.HAIR)}
            flags.update({b: bool(res[b][i, 0] > 0) for b in fc.BINARY})
            pos = np.clip(res["position"][i], 0, 1)
            out.append(fc.face_labels(flags, float(pos[0]), float(pos[1])))
        return out

    def valid(self, images: np.ndarray, n_objects: int | tuple[int, ...] | None = None) -> np.ndarray:
        """bool (N,): is each image a well-formed image of the domain?

        Scenes: the computed check with ``n_objects`` objects (None: one; a tuple: any of those
        counts; the count an expression asks for is :func:`conceptlang.syntax.objects.expected_objects`).
        Faces: the trained validity head and the generator fit (``n_objects`` must be None or 1)."""
        imgs = check_images(images)
        if self.domain == "scenes":
            return V.scenes_valid(imgs, n_objects)
        return np.array([not r for r in self.reasons(imgs, n_objects)], dtype=bool)

    def reasons(self, images: np.ndarray, n_objects: int | tuple[int, ...] | None = None) -> list[list[str]]:
        """Why each image is invalid (empty list when valid)."""
        imgs = check_images(images)
        if self.domain == "scenes":
            return [a.reasons(n_objects) for a in V.analyse_scenes(imgs)]
        if n_objects not in (None, 1, (1,)):
            raise DataError(f"a face image holds one face, not {n_objects}")
        return V.faces_reasons(imgs, self._run(imgs))
