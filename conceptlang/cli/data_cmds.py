"""``conceptlang data`` (write a labelled data set) and ``conceptlang judge`` (read labels off images).

Data set layout written by ``conceptlang data DOMAIN -n N -o DIR``::

    DIR/images/000000.png ...        one PNG per image
    DIR/labels.jsonl                 one line per image: {"file": "images/000000.png", "labels": {...}}
    DIR/dataset.json                 domain description, split, seed, image size, count

The folder is written under a temporary name beside DIR and renamed into place at the end, so an
interrupted run leaves no half-written data set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import click
import numpy as np

from conceptlang.errors import DataError

DOMAINS = ("scenes", "faces")


def _json_default(obj):
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_dataset(domain: str, n: int, out: Path, split: str = "train", seed: int = 0,
                  image_size: int | None = None, force: bool = False, chunk: int = 2048,
                  progress: bool = True) -> Path:
    """Generate and write a labelled data set atomically (see the module docstring); returns ``out``."""
    from PIL import Image
    from tqdm import tqdm

    from conceptlang.data import get_domain, splits
    from conceptlang.io import current_umask

    dom = get_domain(domain)
    if split not in splits(domain):
        raise DataError(f"{domain} has no split {split!r} (splits: {', '.join(splits(domain))})")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise DataError(f"output {out} exists and is not an empty directory (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        # One generate() call fixes every image's parameters from the seed; images are rendered
        # and written chunk by chunk so memory stays bounded at large n or size.
        from importlib import import_module

        mod = import_module(f"conceptlang.data.{domain}")
        sampler = mod.sample_scene_arrays if domain == "scenes" else mod.sample_face_arrays
        render = mod.render_scenes if domain == "scenes" else mod.render_faces
        size = image_size or dom.image_size
        arrays = sampler(n, seed, split)
        width = max(6, len(str(max(n - 1, 0))))
        with open(tmp / "labels.jsonl", "w", encoding="utf-8") as fh, tqdm(
            total=n, desc=f"{domain}/{split}", unit="img", disable=not progress
        ) as bar:
            for start in range(0, n, chunk):
                part = arrays.take(slice(start, min(start + chunk, n)))
                images = render(part, size)
                for k, (img, lab) in enumerate(zip(images, part.to_dicts())):
                    name = f"images/{start + k:0{width}d}.png"
                    Image.fromarray(img).save(tmp / name, format="PNG")
                    fh.write(json.dumps({"file": name, "labels": lab}, default=_json_default) + "\n")
                bar.update(len(images))
        meta = {"format_version": 1, "domain": dom.to_json(), "split": split, "seed": seed,
                "image_size": size, "count": n, "labels": "labels.jsonl"}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp made it 0700; give it an ordinary folder's mode
        if out.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, aside / out.name)
            os.replace(tmp, out)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


@click.command("data")
@click.argument("domain", type=click.Choice(DOMAINS))
@click.option("-n", "n", type=click.IntRange(min=1), required=True, help="Number of images.")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output directory (must not exist or be empty, unless --force).")
@click.option("--split", default="train", show_default=True,
              help="scenes: train, heldout, continual1, continual2, continual3, two_objects; faces: train.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", "size", type=click.IntRange(min=8, max=1024), default=None,
              help="Image side in pixels (default: the domain's, 32).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def data_cmd(domain: str, n: int, out: Path, split: str, seed: int, size: int | None, force: bool, quiet: bool) -> None:
    """Write N labelled images of DOMAIN to OUT (PNGs + labels.jsonl + dataset.json).

    \b
    Examples:
      conceptlang data scenes -n 1000 -o data/scenes
      conceptlang data scenes -n 500 --split heldout -o data/heldout
      conceptlang data faces -n 200 --size 64 -o data/faces
    """
    from conceptlang.data import splits

    if split not in splits(domain):
        raise click.UsageError(f"{domain} has no split {split!r} (splits: {', '.join(splits(domain))})")
    path = write_dataset(domain, n, out, split=split, seed=seed, image_size=size, force=force, progress=not quiet)
    click.echo(f"wrote {n} {domain} images ({split}, seed {seed}) to {path}")


# ---- judge -----------------------------------------------------------------------------------


def split_grid(image: np.ndarray, cell: int, pad: int = 2) -> np.ndarray:
    """Cells of a grid written by ``conceptlang.io.image_grid`` (``pad`` px of grey between cells,
    possibly upscaled by an integer factor), or the image itself when it is one cell.

    Returns uint8 (N, cell, cell, 3); trailing all-grey cells (the grid's unused slots) are dropped.
    """
    h, w = image.shape[:2]
    if (h, w) == (cell, cell):
        return image[None]
    for scale in range(1, 17):
        if h % scale or w % scale:
            continue
        hh, ww = h // scale, w // scale
        if (hh - pad) % (cell + pad) or (ww - pad) % (cell + pad) or hh < cell + 2 * pad:
            continue
        small = image[::scale, ::scale] if scale > 1 else image
        rows, cols = (hh - pad) // (cell + pad), (ww - pad) // (cell + pad)
        cells = []
        for r in range(rows):
            for c in range(cols):
                y, x = pad + r * (cell + pad), pad + c * (cell + pad)
                cells.append(small[y : y + cell, x : x + cell])
        arr = np.stack(cells)
        while len(arr) > 1 and (arr[-1] == 128).all():
            arr = arr[:-1]
        return arr
    if (h, w) == (cell * (h // cell), cell * (h // cell)) and h == w:
        # A single image upscaled by an integer factor.
        return image[:: h // cell, :: w // cell][None]
    raise DataError(
        f"a {w}×{h} image is neither one {cell}×{cell} image nor a grid of {cell}-px cells with {pad}-px padding "
        "(give --grid-cell)"
    )


def _domain_from_sidecar(path: Path) -> str | None:
    for cand in (path.with_suffix(".json"), Path(str(path) + ".json")):
        if cand.is_file():
            try:
                meta = json.loads(cand.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            dom = meta.get("domain") if isinstance(meta, dict) else None
            if isinstance(dom, dict):
                dom = dom.get("name")
            if dom in DOMAINS:
                return dom
    return None


def _summary(lab: dict) -> str:
    objs = lab.get("objects", [])
    if not objs:
        return "(no objects)"
    parts = []
    for o in objs:
        if "shape" in o:
            parts.append(f"{o['size']} {o['color']} {o['shape']} at ({o['x']:.2f}, {o['y']:.2f})")
        else:
            flags = [k for k in ("male", "smiling", "eyeglasses", "young") if o.get(k)]
            parts.append(" ".join([o.get("hair") or "no hair value", *flags]))
    return "; ".join(parts)


@click.command("judge")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--domain", type=click.Choice(DOMAINS), default=None,
              help="Domain of the images (default: from the image's JSON sidecar).")
@click.option("--grid-cell", type=click.IntRange(min=8), default=32, show_default=True,
              help="Side of one image in a grid written by `conceptlang sample`.")
@click.option("--objects", "n_objects", type=click.IntRange(min=1, max=2), default=None,
              help="scenes: the stated number of objects for validity (default: one or two).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one record per image.")
def judge_cmd(image: Path, domain: str | None, grid_cell: int, n_objects: int | None, as_json: bool) -> None:
    """Judge IMAGE (one image or a grid of them): validity and labels per image.

    \b
    Examples:
      conceptlang judge samples.png --domain scenes
      conceptlang judge faces_grid.png --domain faces --json
    """
    from PIL import Image, UnidentifiedImageError

    from conceptlang.evaluation.judge import load_judge

    domain = domain or _domain_from_sidecar(image)
    if domain is None:
        raise click.UsageError("cannot tell the domain from a sidecar JSON; give --domain scenes|faces")
    try:
        with Image.open(image) as img:
            arr = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise click.UsageError(f"{image}: not a readable image ({err})") from None
    cells = split_grid(arr, grid_cell)
    judge = load_judge(domain)
    labels = judge.labels(cells)
    reasons = judge.reasons(cells, n_objects)
    records = []
    for i, (lab, why) in enumerate(zip(labels, reasons)):
        true = sorted(k for k, v in lab.items() if v is True and "." in k)
        records.append({"index": i, "valid": not why, "reasons": why, "concepts": true, "objects": lab["objects"]})
    if as_json:
        click.echo(json.dumps({"image": str(image), "domain": domain, "count": len(records), "images": records},
                              indent=2, default=_json_default))
        return
    n_valid = sum(r["valid"] for r in records)
    click.echo(f"{image}: {len(records)} image(s), {n_valid} valid ({domain} judge)")
    for r, lab in zip(records, labels):
        state = "valid  " if r["valid"] else "INVALID"
        line = f"[{r['index']:3d}] {state} {_summary(lab)}"
        if r["reasons"]:
            line += f"  — {'; '.join(r['reasons'])}"
        click.echo(line)


def register(group: click.Group) -> None:
    group.add_command(data_cmd)
    group.add_command(judge_cmd)
