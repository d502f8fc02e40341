"""Labelled image folders as training data: a ``conceptlang data`` folder or a CelebA root.

:func:`open_data` reads one of two layouts and checks it whole before anything trains:

* a folder written by ``conceptlang data`` (or by hand in its layout)::

      DIR/dataset.json     {"domain": {"name": ..., "families": [{"name", "kind", "values" | "params",
                           "ranges", "exclusive"}, ...]}, "image_size": S, ...}
      DIR/labels.jsonl     one line per image: {"file": "images/000000.png", "labels": {...}}
      DIR/images/...

  A label's ``objects`` list gives one dict per object; a discrete family's value is
  ``object[family]`` (a value name, ``None`` for no value, or ``true``/``false`` for a one-value
  family such as ``male``), a continuous family's parameters are ``object[param]``.

* a CelebA root (``img_align_celeba/``, ``list_attr_celeba.txt``, optional
  ``list_eval_partition.txt``); ``attributes`` picks which of its binary attributes become
  concepts, each a one-value family named by the attribute lowercased (``Black_Hair`` →
  ``black_hair``). ``group_hair`` puts the chosen hair attributes (black, blond, brown, gray, bald)
  into one exclusive family ``hair``; a face with none or several of them has no ``hair`` value.

The labels (small) are held in memory as index arrays (:class:`LabelledData`: ``index[family]``
int64 (N, K), −1 where no value holds; ``positions`` (N, K, 2)); the images stay on disk and are
decoded, centre-cropped and resized on demand (:meth:`LabelledData.image`), in DataLoader worker
processes during training. Every error names the file and, where there is one, the line.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conceptlang.data.celeba import read_attribute_table, read_partition
from conceptlang.data.domain import Domain, Family
from conceptlang.errors import DataError

IMAGE_SIZES = (32, 64, 128)
CELEBA_HAIR = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Bald")
# the faces domain's attributes: the default concepts of a CelebA run
CELEBA_DEFAULT_ATTRIBUTES = ("Male", "Smiling", "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Bald", "Young")
CELEBA_PARTITIONS = {"train": 0, "valid": 1, "test": 2}
CELEBA_CROP = 140 / 178  # centre square kept of an aligned 178×218 CelebA image (the face, little background)


@dataclass
class LabelledData:
    """Labels of a folder of images (in memory) and where the images are (on disk)."""

    domain: Domain  # families from the data; image_size is the training size
    source: str  # "folder" | "celeba"
    root: Path
    files: list[str]  # absolute image paths, one per image
    index: dict[str, np.ndarray]  # family -> int64 (N, K): value index per object, -1 none
    positions: np.ndarray  # float32 (N, K, 2): object centres (x, y) in [0, 1]
    crop_fraction: float = 1.0  # side of the centre square kept, as a fraction of the shorter side
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 (S, S, 3): centre-cropped to a square and resized (box filter)."""
        return load_image(self.files[i], self.domain.image_size, self.crop_fraction)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "root": str(self.root), "images": len(self), **self.info}


def load_image(path: str, size: int, crop_fraction: float = 1.0) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            side = max(1, int(round(min(w, h) * crop_fraction)))
            left, top = (w - side) // 2, (h - side) // 2
            if (left, top, side) != (0, 0, w) or w != h:
                img = img.crop((left, top, left + side, top + side))
            if img.size != (size, size):
                img = img.resize((size, size), Image.BOX)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def open_data(path: str | os.PathLike, attributes: str | list[str] | None = None, group_hair: bool = False,
              image_size: int | None = None, split: str = "train") -> LabelledData:
    """Read and check the labelled folder at ``path`` (either layout); see the module docstring.

    ``image_size`` (32, 64 or 128; default: a data folder's own size, 64 for CelebA) is the side the
    images are trained at. ``split``: CelebA's partition (train, valid, test, or all; train by
    default, everything when there is no ``list_eval_partition.txt``); a data folder is one split.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    if image_size is not None and image_size not in IMAGE_SIZES:
        raise DataError(f"image size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {image_size}")
    if (root / "dataset.json").is_file():
        if attributes or group_hair:
            raise DataError(f"{root} is a `conceptlang data` folder: --attributes and --hair-family are options of a CelebA root")
        if split not in ("train", "all"):
            raise DataError(f"{root} is a `conceptlang data` folder, one split; --split {split!r} is for CelebA (train, valid, test, all)")
        return _open_folder(root, image_size)
    if (root / "list_attr_celeba.txt").is_file():
        return _open_celeba(root, attributes, group_hair, image_size, split)
    raise DataError(f"{root} is neither a `conceptlang data` folder (no dataset.json) nor a CelebA root (no list_attr_celeba.txt)")


# ---- a `conceptlang data` folder --------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {err}") from None


def _domain_from_json(meta: Any, path: Path) -> Domain:
    if not isinstance(meta, dict) or not isinstance(meta.get("domain"), dict):
        raise DataError(f"{path}: expected an object with a 'domain' object (name, families)")
    d = meta["domain"]
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise DataError(f"{path}: domain.name must be a non-empty string, got {name!r}")
    fams_json = d.get("families")
    if not isinstance(fams_json, list) or not fams_json:
        raise DataError(f"{path}: domain.families must be a non-empty list")
    families, seen = [], set()
    for k, f in enumerate(fams_json):
        where = f"{path}: domain.families[{k}]"
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
            raise DataError(f"{where}: expected an object with a 'name'")
        fname = f["name"]
        where = f"{path}: family {fname!r}"
        if fname in seen:
            raise DataError(f"{where}: declared twice")
        seen.add(fname)
        kind = f.get("kind")
        if kind == "discrete":
            values = f.get("values")
            if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values) \
                    or len(set(values)) != len(values):
                raise DataError(f"{where}: 'values' must be distinct non-empty names, got {values!r}")
            families.append(Family(fname, "discrete", values=tuple(values), exclusive=bool(f.get("exclusive", True))))
        elif kind == "continuous":
            params, ranges = f.get("params"), f.get("ranges")
            ok = isinstance(params, list) and params and all(isinstance(p, str) for p in params) \
                and isinstance(ranges, list) and len(ranges) == len(params) \
                and all(isinstance(r, list) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r) and r[0] < r[1]
                        for r in ranges)
            if not ok:
                raise DataError(f"{where}: a continuous family needs 'params' and one [lo, hi] 'ranges' entry per parameter")
            families.append(Family(fname, "continuous", params=tuple(params), ranges=tuple(tuple(map(float, r)) for r in ranges)))
        else:
            raise DataError(f"{where}: 'kind' must be 'discrete' or 'continuous', got {kind!r}")
    size = meta.get("image_size", d.get("image_size"))
    if not isinstance(size, int) or size < 8:
        raise DataError(f"{path}: image_size must be an integer >= 8, got {size!r}")
    return Domain(name=name, image_size=size, channels=3, families=tuple(families), description=str(d.get("description", "")))


def _object_index(fam: Family, obj: dict, where: str) -> int:
    """The value index of ``fam`` for one object's labels (−1: no value holds)."""
    if fam.name in obj:
        v = obj[fam.name]
        if v is None or v is False:
            return -1
        if v is True:
            if len(fam.values) != 1:
                raise DataError(f"{where}: family {fam.name!r} has values {', '.join(fam.values)}; 'true' does not say which")
            return 0
        if isinstance(v, str):
            if v not in fam.values:
                raise DataError(f"{where}: {fam.name} = {v!r} is not one of its values ({', '.join(fam.values)})")
            return fam.values.index(v)
        raise DataError(f"{where}: {fam.name} must be a value name, null or a boolean, got {v!r}")
    flags = [obj.get(v, obj.get(f"{fam.name}.{v}")) for v in fam.values]
    if all(f is None for f in flags):
        raise DataError(f"{where}: no label for family {fam.name!r}")
    true = [v for v, f in zip(fam.values, flags) if f is True]
    if len(true) > 1 and fam.exclusive:
        raise DataError(f"{where}: family {fam.name!r} is exclusive but {', '.join(true)} all hold")
    return fam.values.index(true[0]) if true else -1


def _open_folder(root: Path, image_size: int | None) -> LabelledData:
    meta_path = root / "dataset.json"
    declared = _domain_from_json(_read_json(meta_path), meta_path)
    size = image_size or declared.image_size
    if size not in IMAGE_SIZES:
        raise DataError(f"{meta_path}: images are {declared.image_size} px; give --image-size "
                        f"{'|'.join(map(str, IMAGE_SIZES))} to train at one of the supported sizes")
    domain = Domain(declared.name, size, 3, declared.families, declared.description)
    labels_name = _read_json(meta_path).get("labels", "labels.jsonl")
    labels_path = root / str(labels_name)
    if not labels_path.is_file():
        raise DataError(f"{labels_path}: labels file not found (dataset.json names {labels_name!r})")
    files: list[str] = []
    rows: list[list[list[int]]] = []  # per image, per object: value index per discrete family
    pos: list[list[tuple[float, float]]] = []
    continuous = [f for f in domain.families if f.kind == "continuous"]
    if len(continuous) > 1:
        raise DataError(f"{meta_path}: at most one continuous (position) family is supported, got {', '.join(f.name for f in continuous)}")
    cont = continuous[0] if continuous else None
    discrete = [f for f in domain.families if f.kind == "discrete"]
    first_line: dict[str, int] = {}
    with open(labels_path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{labels_path}, line {lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg}, column {err.colno})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("file"), str) or not isinstance(rec.get("labels"), dict):
                raise DataError(f"{where}: expected {{\"file\": \"images/...\", \"labels\": {{...}}}}")
            rel = rec["file"]
            img = (root / rel).resolve()
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise DataError(f"{where}: image path {rel!r} must lie inside {root}")
            if not img.is_file():
                raise DataError(f"{where}: image {rel} is missing ({img})")
            if rel in first_line:
                raise DataError(f"{where}: image {rel} is already listed on line {first_line[rel]}")
            first_line[rel] = lineno
            objects = rec["labels"].get("objects")
            if objects is None:
                objects = [rec["labels"]]
            if not isinstance(objects, list) or not objects or not all(isinstance(o, dict) for o in objects):
                raise DataError(f"{where}: 'objects' must be a non-empty list of objects")
            per_obj, per_pos = [], []
            for o in objects:
                per_obj.append([_object_index(f, o, where) for f in discrete])
                if cont is not None:
                    try:
                        p = tuple(float(o[q]) for q in cont.params)
                    except (KeyError, TypeError, ValueError):
                        raise DataError(f"{where}: every object needs numbers {', '.join(cont.params)} (family {cont.name!r})") from None
                    for v, (lo, hi), q in zip(p, cont.ranges, cont.params):
                        if not lo <= v <= hi:
                            raise DataError(f"{where}: {q} = {v} is outside [{lo}, {hi}] (family {cont.name!r})")
                    per_pos.append(p[:2] if len(p) >= 2 else (p[0], 0.5))
                else:
                    per_pos.append((float(o.get("x", 0.5)) if isinstance(o.get("x"), (int, float)) else 0.5,
                                    float(o.get("y", 0.5)) if isinstance(o.get("y"), (int, float)) else 0.5))
            files.append(str(img))
            rows.append(per_obj)
            pos.append(per_pos)
    if not files:
        raise DataError(f"{labels_path}: lists no images")
    k = max(2, max(len(r) for r in rows)) if any(len(r) > 1 for r in rows) else 1
    n = len(files)
    index = {f.name: np.full((n, k), -1, np.int64) for f in discrete}
    positions = np.zeros((n, k, 2), np.float32)
    for i, (objs, ps) in enumerate(zip(rows, pos)):
        for j in range(k):
            src = j if j < len(objs) else 0  # a one-object image repeats its object
            for c, f in enumerate(discrete):
                index[f.name][i, j] = objs[src][c]
            positions[i, j] = ps[src]
    _check_varies(domain, index, str(labels_path))
    return LabelledData(domain, "folder", root, files, index, positions, 1.0,
                        {"labels": str(labels_path.name), "declared_image_size": declared.image_size})


def _check_varies(domain: Domain, index: dict[str, np.ndarray], where: str) -> None:
    """A family whose labels never change (every image has the same value) teaches no concept."""
    for f in domain.families:
        if f.kind != "discrete":
            continue
        seen = np.unique(index[f.name])
        if len(seen) < 2:
            what = "no value" if seen[0] < 0 else f"the value {f.values[seen[0]]!r}"
            raise DataError(f"{where}: family {f.name!r} has a single value: every image has {what}; "
                            "a concept needs images with and without it (drop it from the data)")


# ---- CelebA -----------------------------------------------------------------------------------


def _celeba_images(root: Path) -> Path:
    nested = root / "img_align_celeba" / "img_align_celeba"  # some mirrors unpack the zip one level deeper
    if nested.is_dir():
        return nested
    if (root / "img_align_celeba").is_dir():
        return root / "img_align_celeba"
    raise DataError(f"CelebA folder {root}: no img_align_celeba/ directory of images")


def parse_attributes(text: str | list[str] | None) -> list[str]:
    if text is None or text == "":
        return list(CELEBA_DEFAULT_ATTRIBUTES)
    items = text.split(",") if isinstance(text, str) else list(text)
    out = [a.strip() for a in items if a.strip()]
    if not out:
        raise DataError(f"--attributes names no attribute: {text!r}")
    return out


def _open_celeba(root: Path, attributes, group_hair: bool, image_size: int | None, split: str) -> LabelledData:
    attr_path = root / "list_attr_celeba.txt"
    names, files, vals, linenos = read_attribute_table(attr_path)
    lower = {n.lower(): i for i, n in enumerate(names)}
    chosen: list[int] = []
    for a in parse_attributes(attributes):
        if a.lower() not in lower:
            close = difflib.get_close_matches(a, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (attributes: {', '.join(names)})"
            raise DataError(f"unknown attribute {a!r}: {attr_path}, line 2 has no such column{hint}")
        if lower[a.lower()] in chosen:
            raise DataError(f"--attributes names {a!r} twice")
        chosen.append(lower[a.lower()])
    img_dir = _celeba_images(root)
    part_path = root / "list_eval_partition.txt"
    keep = np.ones(len(files), bool)
    if split != "all":
        if split not in CELEBA_PARTITIONS:
            raise DataError(f"CelebA has no split {split!r} (splits: train, valid, test, all)")
        if part_path.is_file():
            part = read_partition(part_path)
            keep = np.array([part.get(f) == CELEBA_PARTITIONS[split] for f in files], bool)
        elif split != "train":
            raise DataError(f"split {split!r} needs {part_path}, which does not exist")
    present = set(os.listdir(img_dir))
    for f, ln, k in zip(files, linenos, keep):
        if k and f not in present:
            raise DataError(f"{attr_path}, line {ln}: image {f} is missing from {img_dir}")
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        raise DataError(f"{root}: no images in split {split!r}")
    sel = vals[idx]
    hair_cols = [c for c in chosen if names[c] in CELEBA_HAIR] if group_hair else []
    if group_hair and len(hair_cols) < 2:
        raise DataError(f"--hair-family groups the chosen hair attributes ({', '.join(CELEBA_HAIR)}) into one "
                        f"family, but {len(hair_cols)} of them were chosen: a family with a single value")
    families, index = [], {}
    for c in chosen:
        if c in hair_cols:
            if c == hair_cols[0]:
                values = tuple(names[h].lower() for h in hair_cols)
                families.append(Family("hair", "discrete", values=values, exclusive=True,
                                       description="hair colour (CelebA " + ", ".join(names[h] for h in hair_cols) + ")"))
                flags = sel[:, hair_cols]
                one = flags.sum(1) == 1
                index["hair"] = np.where(one, flags.argmax(1), -1).astype(np.int64)[:, None]
            continue
        nm = names[c].lower()
        families.append(Family(nm, "discrete", values=(nm,), description=f"CelebA {names[c]}"))
        index[nm] = np.where(sel[:, c], 0, -1).astype(np.int64)[:, None]
    size = image_size or 64
    domain = Domain("celeba", size, 3, tuple(families), "CelebA attributes " + ", ".join(names[c] for c in chosen))
    _check_varies(domain, index, f"{attr_path} ({len(idx)} images of split {split!r})")
    positions = np.full((len(idx), 1, 2), 0.5, np.float32)
    return LabelledData(domain, "celeba", root, [str(img_dir / files[i]) for i in idx], index, positions, CELEBA_CROP,
                        {"split": split, "attributes": [names[c] for c in chosen], "hair_family": bool(group_hair)})
