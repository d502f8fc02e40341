"""``conceptlang data``: write a labelled data set.

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


def json_default(obj):
    """``json.dumps(default=...)`` for numpy scalars."""
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
                    fh.write(json.dumps({"file": name, "labels": lab}, default=json_default) + "\n")
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


def register(group: click.Group) -> None:
    group.add_command(data_cmd)
