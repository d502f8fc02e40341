"""Loader for the real CelebA folder layout, yielding the same (image, labels) records as ``faces``.

Expected layout (as distributed by the CelebA authors)::

    ROOT/
      img_align_celeba/000001.jpg ...      (also accepted: img_align_celeba/img_align_celeba/)
      list_attr_celeba.txt                 line 1: image count; line 2: the 40 attribute names;
                                           then "000001.jpg  -1  1 ..." (one ±1 per attribute)
      list_eval_partition.txt              optional: "000001.jpg 0" (0 train, 1 valid, 2 test)

Each image is centre-cropped to a square (side ``crop_fraction`` × the shorter side, 140/178 by
default, which keeps the face and drops most of the background of the aligned 178×218 images) and
resized to ``image_size`` with a box filter. Labels use the faces domain's names; CelebA's hair
flags (``Black_Hair``, ``Blond_Hair``, ``Brown_Hair``, ``Bald``) are independent in the annotation, so
they are copied as they are and may all be false (e.g. grey hair) or, rarely, several true.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from conceptlang.data.faces import ATTRIBUTES, face_labels
from conceptlang.errors import DataError

# faces-domain name -> CelebA column name
CELEBA_COLUMNS: dict[str, str] = {
    "male": "Male",
    "smiling": "Smiling",
    "black_hair": "Black_Hair",
    "blond_hair": "Blond_Hair",
    "brown_hair": "Brown_Hair",
    "eyeglasses": "Eyeglasses",
    "bald": "Bald",
    "young": "Young",
}
PARTITIONS = {"train": 0, "valid": 1, "test": 2}
DEFAULT_CROP_FRACTION = 140 / 178


@dataclass(frozen=True)
class CelebARecord:
    filename: str
    flags: dict[str, bool]  # faces-domain attribute name -> bool


def _image_dir(root: Path) -> Path:
    # Some mirrors unpack the zip into img_align_celeba/img_align_celeba/.
    nested = root / "img_align_celeba" / "img_align_celeba"
    if nested.is_dir():
        return nested
    if (root / "img_align_celeba").is_dir():
        return root / "img_align_celeba"
    raise DataError(f"CelebA folder {root}: no img_align_celeba/ directory of images")


def read_attribute_table(path: Path) -> tuple[list[str], list[str], np.ndarray, list[int]]:
    """``list_attr_celeba.txt`` → (attribute names, file names, int8 (N, A) of ±1, line number per file)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a header line, got {len(lines)} line(s)")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}, line 1: expected the number of images, got {lines[0].strip()!r}") from None
    names = lines[1].split()
    if not names or len(set(names)) != len(names):
        raise DataError(f"{path}, line 2: expected distinct attribute names, got {lines[1].strip()!r}")
    files, vals, linenos = [], [], []
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(f"{path}, line {lineno}: expected a file name and {len(names)} values, got {len(parts) - 1} values")
        row = parts[1:]
        bad = [v for v in row if v not in ("1", "-1")]
        if bad:
            raise DataError(f"{path}, line {lineno}: attribute values must be 1 or -1, got {bad[0]!r}")
        files.append(parts[0])
        vals.append([v == "1" for v in row])
        linenos.append(lineno)
    if len(files) != count:
        raise DataError(f"{path}, line 1: announces {count} images but {len(files)} are listed")
    return names, files, (np.asarray(vals, dtype=bool) if vals else np.zeros((0, len(names)), bool)), linenos


def read_attributes(path: str | Path) -> list[CelebARecord]:
    """Parse ``list_attr_celeba.txt``; raises DataError naming the line of any malformed entry."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CelebA attribute file not found: {path}")
    names, files, vals, _ = read_attribute_table(path)
    missing = [c for c in CELEBA_COLUMNS.values() if c not in names]
    if missing:
        raise DataError(f"{path}, line 2: header lacks attribute(s) {', '.join(missing)}")
    cols = {attr: names.index(col) for attr, col in CELEBA_COLUMNS.items()}
    return [CelebARecord(f, {a: bool(row[i]) for a, i in cols.items()}) for f, row in zip(files, vals)]


def read_partition(path: str | Path) -> dict[str, int]:
    path = Path(path)
    out: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}, line {lineno}: expected '<file> 0|1|2', got {line.strip()!r}")
        out[parts[0]] = int(parts[1])
    return out


def crop_resize(image: "PIL.Image.Image", image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> np.ndarray:  # noqa: F821
    """Centre-crop a square of ``crop_fraction`` × the shorter side, resize → uint8 (S, S, 3)."""
    from PIL import Image

    w, h = image.size
    side = max(1, int(round(min(w, h) * crop_fraction)))
    left, top = (w - side) // 2, (h - side) // 2
    img = image.convert("RGB").crop((left, top, left + side, top + side))
    img = img.resize((image_size, image_size), Image.BOX)
    return np.asarray(img, dtype=np.uint8)


def iter_celeba(
    root: str | Path,
    split: str | None = None,
    image_size: int = 32,
    limit: int | None = None,
    crop_fraction: float = DEFAULT_CROP_FRACTION,
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield ``(uint8 (S, S, 3) image, labels dict)`` for the CelebA folder at ``root``.

    ``split`` ("train", "valid", "test") needs ``list_eval_partition.txt``; ``None`` yields all.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"CelebA folder not found: {root} (expected img_align_celeba/ and list_attr_celeba.txt)")
    if not 0 < crop_fraction <= 1:
        raise DataError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    images = _image_dir(root)
    records = read_attributes(root / "list_attr_celeba.txt")
    if split is not None:
        if split not in PARTITIONS:
            raise DataError(f"CelebA has no split {split!r} (splits: {', '.join(PARTITIONS)})")
        part_file = root / "list_eval_partition.txt"
        if not part_file.is_file():
            raise DataError(f"split {split!r} needs {part_file}, which does not exist")
        part = read_partition(part_file)
        records = [r for r in records if part.get(r.filename) == PARTITIONS[split]]
    for k, rec in enumerate(records):
        if limit is not None and k >= limit:
            return
        path = images / rec.filename
        if not path.is_file():
            raise DataError(f"CelebA image listed in list_attr_celeba.txt is missing: {path}")
        try:
            with Image.open(path) as img:
                arr = crop_resize(img, image_size, crop_fraction)
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"cannot read CelebA image {path}: {err}") from None
        flags = {a: rec.flags[a] for a in ATTRIBUTES}
        labels = face_labels(flags, 0.5, 0.5)
        labels["objects"][0]["file"] = rec.filename
        yield arr, labels


def load_celeba(
    root: str | Path, split: str | None = None, image_size: int = 32, limit: int | None = None,
    crop_fraction: float = DEFAULT_CROP_FRACTION,
) -> tuple[np.ndarray, list[dict]]:
    """All of :func:`iter_celeba` at once: uint8 (N, S, S, 3) and the list of labels."""
    imgs, labels = [], []
    for im, lab in iter_celeba(root, split, image_size, limit, crop_fraction):
        imgs.append(im)
        labels.append(lab)
    arr = np.stack(imgs) if imgs else np.zeros((0, image_size, image_size, 3), np.uint8)
    return arr, labels
