"""``conceptlang judge``: read labels and validity off images, and train or measure the judges.

    conceptlang judge IMAGE [--domain D]          # judge one image or a grid (same as `judge image`)
    conceptlang judge train DOMAIN -o DIR         # train a judge into DIR (checkpoint + manifest)
    conceptlang judge eval DOMAIN [--judges DIR]  # re-measure a judge on held-out generator output
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from conceptlang.errors import DataError
from conceptlang.io import jsonable

DOMAINS = ("scenes", "faces")


class JudgeGroup(click.Group):
    """A group whose first argument, when it names no subcommand, is an image for ``image``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["image", *args]
        return super().parse_args(ctx, args)


@click.group("judge", cls=JudgeGroup)
def judge_group() -> None:
    """Judge images (`conceptlang judge IMAGE`), or train and measure the judges.

    An image file named like a subcommand (train, eval, image) is given as ./train.
    """


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


def _expression_from_sidecar(path: Path):
    """The parsed expression of IMAGE's ``conceptlang sample`` sidecar, or None."""
    from conceptlang.errors import ConceptLangError
    from conceptlang.syntax import parse

    for cand in (path.with_suffix(".json"), Path(str(path) + ".json")):
        if cand.is_file():
            try:
                meta = json.loads(cand.read_text())
                text = meta.get("expression") if isinstance(meta, dict) else None
                if isinstance(text, str):
                    return parse(text)
            except (OSError, json.JSONDecodeError, ConceptLangError):
                continue
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


def _check_arguments(expr, domain: str, text: str) -> None:
    """The arguments of --expr's parameterised concepts against DOMAIN's ranges (``position(3, 1)``
    is off the canvas): an :class:`~conceptlang.errors.ExpressionError` with line, column and caret."""
    from conceptlang.compiler.resolve import check_arguments
    from conceptlang.data import get_domain
    from conceptlang.syntax.ast import Concept
    from conceptlang.syntax.passes import expand_definitions
    from conceptlang.syntax.walk import postorder

    dom = get_domain(domain)
    for node in postorder(expand_definitions(expr)):
        if isinstance(node, Concept) and node.args is not None:
            try:
                fam = dom.family(node.name)
            except DataError:
                continue  # not a family of the domain: the labels' own lookup names it
            if fam.kind == "continuous":
                check_arguments(node, fam, text)


@judge_group.command("image")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--domain", type=click.Choice(DOMAINS), default=None,
              help="Domain of the images (default: from the image's JSON sidecar).")
@click.option("--grid-cell", type=click.IntRange(min=8), default=32, show_default=True,
              help="Side of one image in a grid written by `conceptlang sample`.")
@click.option("--objects", "n_objects", type=click.IntRange(min=1), default=None,
              help="scenes: the stated number of objects for validity [default: from --expr, else from the "
                   "image's sidecar expression, else one].")
@click.option("--expr", "expr_text", metavar="EXPR", default=None,
              help="The expression the images were sampled for: sets the expected object count (one per "
                   "distinct position) and reports whether each image satisfies it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one record per image.")
def judge_cmd(image: Path, domain: str | None, grid_cell: int, n_objects: int | None, expr_text: str | None,
              as_json: bool) -> None:
    """Judge IMAGE (one image or a grid of them): validity and labels per image.

    \b
    Examples:
      conceptlang judge samples.png --domain scenes
      conceptlang judge faces_grid.png --domain faces --json
      conceptlang judge two.png --domain scenes --expr "position(0.2, 0.25) & position(0.8, 0.75)"
    """
    from PIL import Image, UnidentifiedImageError

    from conceptlang.judge.load import load_judge

    domain = domain or _domain_from_sidecar(image)
    if domain is None:
        raise click.UsageError("cannot tell the domain from a sidecar JSON; give --domain scenes|faces")
    import warnings

    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and refuses at twice that: both are refused here,
            # before the pixels are decoded (a small file can hold a 60000×60000 image).
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(image) as img:
                arr = np.array(img.convert("RGB"))  # a writable copy (torch.from_numpy warns on read-only arrays)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise click.UsageError(
            f"{image}: the image is too large to judge (more than {Image.MAX_IMAGE_PIXELS:,} pixels; "
            "`conceptlang sample` never writes a grid that large)") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise click.UsageError(f"{image}: not a readable image ({err})") from None
    if n_objects is not None and expr_text is not None:
        raise click.UsageError("give --objects or --expr, not both (--expr sets the object count)")
    expr, source = None, None
    if expr_text is not None:
        from conceptlang.syntax import parse

        expr, source = parse(expr_text), "--expr"
        _check_arguments(expr, domain, expr_text)
    elif n_objects is None:
        expr = _expression_from_sidecar(image)
        source = "the sidecar's expression" if expr is not None else None
    if n_objects is None and expr is not None and domain == "scenes":
        from conceptlang.syntax.objects import expected_objects

        n_objects = expected_objects(expr)
    cells = split_grid(arr, grid_cell)
    judge = load_judge(domain)
    labels = judge.labels(cells)
    reasons = judge.reasons(cells, n_objects)
    satisfied = [None] * len(labels)
    if expr_text is not None:
        from conceptlang.syntax import evaluate

        satisfied = [bool(evaluate(expr, lab)) for lab in labels]
    records = []
    for i, (lab, why) in enumerate(zip(labels, reasons)):
        true = sorted(k for k, v in lab.items() if v is True and "." in k)
        rec = {"index": i, "valid": not why, "reasons": why, "concepts": true, "objects": lab["objects"]}
        if expr_text is not None:
            rec["satisfied"] = satisfied[i]
        records.append(rec)
    expected = (n_objects if n_objects is not None else 1) if domain == "scenes" else 1
    if as_json:
        out = {"image": str(image), "domain": domain, "expected_objects": expected, "count": len(records),
               "images": records}
        if expr_text is not None:
            out["expression"] = expr_text
        click.echo(json.dumps(jsonable(out), indent=2))
        return
    n_valid = sum(r["valid"] for r in records)
    counted = expected if isinstance(expected, int) else " or ".join(map(str, expected))
    why = f" from {source}" if source and domain == "scenes" else ""
    head = f"{image}: {len(records)} image(s), {n_valid} valid ({domain} judge, {counted} object(s) expected{why})"
    if expr_text is not None:
        head += f", {sum(r['valid'] and r['satisfied'] for r in records)} valid and satisfying {expr_text!r}"
    click.echo(head)
    for r, lab in zip(records, labels):
        state = "valid  " if r["valid"] else "INVALID"
        line = f"[{r['index']:3d}] {state} {_summary(lab)}"
        if r.get("satisfied") is not None:
            line += "" if r["satisfied"] else "  (does not satisfy the expression)"
        if r["reasons"]:
            line += f"  — {'; '.join(r['reasons'])}"
        click.echo(line)




def _domains(domain: str) -> list[str]:
    return list(DOMAINS) if domain == "all" else [domain]


@judge_group.command("train")
@click.argument("domain", type=click.Choice([*DOMAINS, "all"]), required=False)
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Judges directory: the checkpoint and manifest.json are written (or updated) here.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training steps (default: the domain's, see conceptlang.judge.training.TRAINING_DEFAULTS; --data: 1500).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Train a judge of a labelled image folder instead (a `conceptlang data` folder or a CelebA root; "
                   "validity = confidence + distance to the nearest real image, see conceptlang/judge/labelled.py).")
@click.option("--attributes", default=None, metavar="A,B,…", help="--data CELEBA: the attributes judged (as for `train`).")
@click.option("--hair-family", is_flag=True, help="--data CELEBA: the chosen hair attributes as one family (as for `train`).")
@click.option("--data-workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="--data: processes that read the images.")
def judge_train_cmd(domain: str | None, out: Path, steps: int | None, seed: int, data_dir: str | None,
                    attributes: str | None, hair_family: bool, data_workers: int) -> None:
    """Train the judge of DOMAIN (or both) on generator output, or of a labelled folder (--data);
    one CPU thread, minutes each.

    \b
    Examples:
      conceptlang judge train scenes -o judges
      conceptlang judge train all -o models/judges     # retrain the shipped judges
      conceptlang judge train --data data/faces64 -o judges/faces64
      conceptlang eval suite.txt --models RUN --judge judges/faces64
    """
    from conceptlang.io import check_dir_output
    from conceptlang.judge.training import default_config, train_judge

    check_dir_output(out, "-o/--out")
    if data_dir is not None:
        import torch

        from conceptlang.judge.labelled import train_labelled_judge

        if domain is not None:
            raise click.UsageError(f"give a DOMAIN or --data, not both (got {domain!r} and --data {data_dir})")
        torch.set_num_threads(1)
        entry = train_labelled_judge(data_dir, out, steps=steps or 1500, seed=seed, workers=data_workers,
                                     attributes=attributes, group_hair=hair_family,
                                     log=lambda msg: click.echo(msg, err=True))
        click.echo(json.dumps(entry["metrics"], indent=1))
        return
    if domain is None:
        raise click.UsageError("give a DOMAIN (scenes, faces, all) or --data DIR")
    if attributes or hair_family:
        raise click.UsageError("--attributes and --hair-family are options of --data")
    for dom in _domains(domain):
        entry = train_judge(default_config(dom, steps=steps, seed=seed), out)
        click.echo(json.dumps(entry["metrics"], indent=1))


@judge_group.command("eval")
@click.argument("domain", type=click.Choice([*DOMAINS, "all"]))
@click.option("--judges", "judges", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Judges directory (default: the shipped judges).")
@click.option("--update", is_flag=True, help="Write the new figures into the judges' manifest.")
def judge_eval_cmd(domain: str, judges: Path | None, update: bool) -> None:
    """Re-measure the judge of DOMAIN (or both) on held-out generator output; prints JSON.

    \b
    Examples:
      conceptlang judge eval scenes
      conceptlang judge eval all --judges models/judges --update
    """
    import torch

    from conceptlang.judge.load import judges_dir, load_judge
    from conceptlang.judge.measure import measure, store_metrics

    torch.set_num_threads(1)
    directory = judges or judges_dir()
    for dom in _domains(domain):
        metrics = measure(load_judge(dom, directory))
        click.echo(json.dumps(metrics, indent=1))
        if update:
            store_metrics(directory, dom, metrics)


def register(group: click.Group) -> None:
    group.add_command(judge_group)
