"""``conceptlang data``: write a labelled data set.

Data set layout written by ``conceptlang data DOMAIN -n N -o DIR``::

    DIR/images/000000.png ...        one PNG per image
    DIR/labels.jsonl                 one line per image: {"file": "images/000000.png", "labels": {...}}
    DIR/dataset.json                 domain description, split, seed, image size, count

The folder is written under a temporary name beside DIR and renamed into place at the end, so an
interrupted run leaves no half-written data set. Images stream to disk: labels are drawn in blocks
of ``BLOCK`` images and rendered in chunks, so memory does not grow with N. Block 0 is drawn from
the seed itself (so a data set of up to ``BLOCK`` images is ``generate(domain, N, seed)``), block j
from a seed derived from (seed, j). Before anything is written, the output folder is checked and
the free space and file count of its file system are compared with what N images need.
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
from conceptlang.io import jsonable

DOMAINS = ("scenes", "faces")
BLOCK = 100_000  # images whose labels are drawn at once
SEED_MAX = 2**32 - 1  # the generators use 32-bit seeds; larger ones would alias smaller ones


def block_seed(seed: int, block: int) -> int:
    """The seed of block ``block`` of a data set with ``seed``: the seed itself for block 0."""
    if block == 0:
        return seed
    return int(np.random.SeedSequence([seed, block]).generate_state(1, dtype=np.uint32)[0])


def _check_space(folder: Path, n: int, png_bytes: int, label_bytes: int) -> None:
    """Refuse (DataError) a data set the file system of ``folder`` cannot hold: one file per image
    takes at least one allocation block, and each image needs its own inode."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # pragma: no cover - no statvfs (Windows)
        return
    block = st.f_frsize or st.f_bsize or 1
    per_image = -(-png_bytes // block) * block + label_bytes
    need, free = n * per_image, st.f_bavail * block
    if need > free:
        raise DataError(f"-n {n}: the data set needs about {need / 2**30:,.1f} GiB ({per_image:,} bytes per image: "
                        f"one PNG file each, and its labels), but {folder} has {free / 2**30:,.1f} GiB free")
    if st.f_files > 0 and n + 4 > st.f_favail:
        raise DataError(f"-n {n}: the data set needs {n + 4:,} files (one PNG per image), but the file system of "
                        f"{folder} has room for {st.f_favail:,} more")


def write_dataset(domain: str, n: int, out: Path, split: str = "train", seed: int = 0,
                  image_size: int | None = None, force: bool = False, chunk: int = 2048,
                  progress: bool = True) -> Path:
    """Generate and write a labelled data set atomically (see the module docstring); returns ``out``."""
    import io
    from importlib import import_module

    from PIL import Image
    from tqdm import tqdm

    from conceptlang.data import check_split, get_domain
    from conceptlang.errors import OutputError
    from conceptlang.io import check_dir_output, current_umask

    dom = get_domain(domain)
    check_split(domain, split)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise DataError(f"the seed must be an integer from 0 to {SEED_MAX}, got {seed!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"the number of images must be a positive integer, got {n!r}")
    out = Path(out)
    check_dir_output(out, "-o/--out")
    if out.exists() and any(out.iterdir()) and not force:
        raise DataError(f"output {out} exists and is not an empty directory (use --force to replace it)")
    mod = import_module(f"conceptlang.data.{domain}")
    sampler = mod.sample_scene_arrays if domain == "scenes" else mod.sample_face_arrays
    render = mod.render_scenes if domain == "scenes" else mod.render_faces
    size = image_size or dom.image_size
    first = sampler(min(n, 8), seed, split)
    pngs = []
    for img in render(first, size):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        pngs.append(len(buf.getvalue()))
    width = max(6, len(str(max(n - 1, 0))))
    label_bytes = min(len(json.dumps(jsonable({"file": f"images/{0:0{width}d}.png", "labels": lab}))) + 1
                      for lab in first.to_dicts())
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _check_space(out.parent, n, min(pngs), label_bytes)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as err:
        raise OutputError(f"-o/--out {out}: cannot create it ({err.strerror or err})") from None
    try:
        (tmp / "images").mkdir()
        with open(tmp / "labels.jsonl", "w", encoding="utf-8") as fh, tqdm(
            total=n, desc=f"{domain}/{split}", unit="img", disable=not progress
        ) as bar:
            for b0 in range(0, n, BLOCK):
                arrays = sampler(min(BLOCK, n - b0), block_seed(seed, b0 // BLOCK), split)
                for start in range(0, len(arrays), chunk):
                    part = arrays.take(slice(start, min(start + chunk, len(arrays))))
                    images = render(part, size)
                    for k, (img, lab) in enumerate(zip(images, part.to_dicts())):
                        name = f"images/{b0 + start + k:0{width}d}.png"
                        Image.fromarray(img).save(tmp / name, format="PNG")
                        fh.write(json.dumps(jsonable({"file": name, "labels": lab})) + "\n")
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
@click.option("--seed", type=click.IntRange(min=0, max=SEED_MAX), default=0, show_default=True,
              help="Seed of the images, 0 to 2^32-1.")
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
    from conceptlang.data import check_split

    try:
        check_split(domain, split)
    except DataError as err:
        raise click.UsageError(err.message) from None
    path = write_dataset(domain, n, out, split=split, seed=seed, image_size=size, force=force, progress=not quiet)
    click.echo(f"wrote {n} {domain} images ({split}, seed {seed}) to {path}")


def register(group: click.Group) -> None:
    group.add_command(data_cmd)
