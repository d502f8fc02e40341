"""``conceptlang sample`` and ``conceptlang explain``: compile an expression and sample or describe it.

torch and the models are imported inside the commands, so ``conceptlang parse`` stays fast.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import click

from conceptlang.cli.common import device_option, load_registry_for, models_option, read_source, set_threads, threads_option

SAMPLER_NAMES = ("langevin", "annealed", "mala", "heun", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m")
# Chains sampled at once unless --batch-size says otherwise: bounds the sampler's working memory,
# so a large -n runs in batches (results depend on the seed, the device and the batch size).
DEFAULT_BATCH_SIZE = 256
# The largest grid PNG written: Pillow's default MAX_IMAGE_PIXELS, beyond which Pillow (and so
# `conceptlang judge`) refuses to read an image back as a possible decompression bomb.
GRID_MAX_PIXELS = 89_478_485
GIF_FRAMES = 24  # snapshots of the first chains an animated GIF shows
SEED_MAX = 2**64 - 1  # the sampler's seeds are 64-bit; larger ones would alias smaller ones


def _expression_text(expression: str | None, file: str | None) -> str:
    if expression is not None and file is not None:
        raise click.UsageError("give either an EXPRESSION or -f FILE, not both")
    if expression is None and file is None:
        raise click.UsageError("give an EXPRESSION, -f FILE, or '-' to read standard input")
    if file is not None:
        return read_source(file)
    if expression == "-":
        return read_source("-")
    return expression  # type: ignore[return-value]


# conceptlang.compiler.options' AND_MODES / OR_MODES, spelled out so that importing the CLI does not
# import the compiler package (and torch); tests/cli check that the two agree.
_AND_MODES = ("sum", "product", "joint")
_OR_MODES = ("auto", "dnf", "lse")
_NEGATION_MODES = ("ratio", "complement")
_OR_WEIGHT_MODES = ("data", "equal")
_FREE_FAMILY_MODES = ("model", "discrete", "data")
_NAMED_POSITION_MODES = ("point", "data")
_DRAW_MODES = ("spread", "independent")  # conceptlang.sampling.draws.DRAW_MODES


COMPILE_OPTIONS = ("alpha", "temperature", "negation", "free_families", "named_positions", "named_radius", "or_weights",
                   "and_mode", "or_mode", "concept_weights", "finish", "strict")
SAMPLER_OPTIONS = ("sampler", "steps", "step_size", "noise_scale", "clip_denoised", "restarts", "restart_sigma", "s_churn",
                   "s_noise", "eta", "eta_sigma_min", "max_nfe", "batch_size", "estimate_log_z", "draws")
OUTPUT_OPTIONS = ("output", "per_image", "gif", "scale", "as_json", "progress")


def _grouped(**groups: tuple[str, ...]):
    """Hand a command's options to it as one dict per group (``group={name: value}``), not as one
    parameter each."""

    def decorate(f):
        @functools.wraps(f)
        def callback(**kw):
            for group, names in groups.items():
                kw[group] = {name: kw.pop(name) for name in names}
            return f(**kw)

        return callback

    return decorate


def _compile_options(alpha=None, temperature=None, and_mode=None, or_mode=None, strict=False, concept_weights=True,
                     finish=True, negation=None, free_families=None, named_positions=None, named_radius=None,
                     or_weights=None) -> dict[str, Any]:
    given = {"or_weights": or_weights, "negation": negation, "free_families": free_families,
             "named_positions": named_positions, "named_radius": named_radius, "alpha": alpha,
             "tau": temperature, "and_mode": and_mode, "or_mode": or_mode}
    return {"strict": strict, "concept_weights": concept_weights, "finish": finish,
            **{k: v for k, v in given.items() if v is not None}}


def _checked_compile_options(compile_opts: dict[str, Any]) -> dict[str, Any]:
    """The compile options of the command line, validated before anything loads: a value out of
    range (--alpha 2, --named-radius 5) is a usage error."""
    from conceptlang.compiler.options import make_options
    from conceptlang.errors import CompileError

    opts = _compile_options(**compile_opts)
    try:
        make_options(**opts)
    except CompileError as err:
        raise click.UsageError(str(err)) from None
    return opts


def _common_compile_options(f):
    f = click.option("--strict", is_flag=True, help="An unsatisfiable expression, one the models were not trained for "
                          "(more objects than they saw per image), or values beside several places that no layout "
                          "of the data holds, is an error, not a warning.")(f)
    f = click.option("--concept-weights/--no-concept-weights", default=True,
                     help="Apply the models' calibrated concept weights (manifest `concept_weights`). [default: on]")(f)
    f = click.option("--finish/--no-finish", default=True,
                     help="Hand the last noise levels to the models' finishing model where the set has one "
                          "(manifest `finish_below`); --no-finish composes to the end. [default: on]")(f)
    f = click.option("--or-mode", type=click.Choice(list(_OR_MODES)), default=None,
                     help="OR route: exact DNF mixture (auto/dnf) or log-sum-exp energies (lse). [default: auto]")(f)
    f = click.option("--and-mode", type=click.Choice(list(_AND_MODES)), default=None,
                     help="AND as the plain sum of energies, the prior-corrected product, or joint (the "
                          "product, with concepts one joint model scores together as one condition). "
                          "[default: the registry's, else sum]")(f)
    f = click.option("--or-weights", type=click.Choice(list(_OR_WEIGHT_MODES)), default=None,
                     help="OR branches drawn with the data's probability of each (disjoint value combinations; "
                          "equal shares where the models have no data frequencies) or in equal shares as written. "
                          "[default: data]")(f)
    f = click.option("--named-positions", type=click.Choice(list(_NAMED_POSITION_MODES)), default=None,
                     help="position(x, y) as the exact point (point), or drawn per chain from the data where it "
                          "holds, within --named-radius of the point (data; with --free-families data). [default: the registry's, "
                          "else point]")(f)
    f = click.option("--named-radius", type=float, default=None,
                     help="With --named-positions data: the radius a named position is spread over, in (0, 0.1]. "
                          "[default: the registry's, else 0.1]")(f)
    f = click.option("--free-families", type=click.Choice(list(_FREE_FAMILY_MODES)), default=None,
                     help="Families a conjunction leaves free: drawn by the model; or as the data has them, "
                          "discrete ones as a mixture of joint conditions and continuous ones (position) drawn "
                          "per chain (data), or the discrete ones only (discrete). [default: the registry's, else model]")(f)
    f = click.option("--negation", type=click.Choice(list(_NEGATION_MODES)), default=None,
                     help="~c as the paper's ratio p(x|A)/p(x|c)^α (ratio) or as the mixture of c's family's "
                          "other values / the attribute's absent value (complement). "
                          "[default: the registry's, else ratio]")(f)
    f = click.option("--temperature", type=float, default=None, help="OR temperature τ. [default: 1]")(f)
    f = click.option("--alpha", type=float, default=None,
                     help="Negation strength α in (0, 1]. [default: the registry's, else 0.5]")(f)
    f = models_option(f)
    f = click.option("-f", "--file", "file", metavar="FILE", help="Read the expression from FILE ('-' for stdin).")(f)
    f = click.argument("expression", required=False)(f)
    return f


@click.command("explain")
@_common_compile_options
@click.option("--dot", is_flag=True, help="Print the energy graph as Graphviz DOT.")
@click.option("--json", "as_json", is_flag=True, help="Print the energy graph as JSON.")
@_grouped(compile_opts=COMPILE_OPTIONS)
def explain_cmd(expression, file, models, compile_opts, dot, as_json) -> None:
    """Compile EXPRESSION and show its energy graph: leaves, sums, log-sum-exps, how each negation
    is grounded, and the sampling route.

    \b
    Examples:
      conceptlang explain "(male & smiling) | ~black_hair"
      conceptlang explain --dot "shape.circle & ~color.red" | dot -Tpng > graph.png
    """
    import warnings

    from conceptlang.compiler import compile as compile_expr

    if dot and as_json:
        raise click.UsageError("choose one of --dot and --json")
    text = _expression_text(expression, file)
    options = _checked_compile_options(compile_opts)
    registry = load_registry_for(models)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # explain prints the warning itself, as a note
        graph = compile_expr(text, registry, **options)
    if dot:
        click.echo(graph.to_dot(), nl=False)
    elif as_json:
        click.echo(json.dumps(graph.to_json(), indent=2))
    else:
        click.echo(graph.explain())


def _model_record(model) -> dict[str, Any]:
    rec: dict[str, Any] = {"name": model.name, "domain": model.domain, "kind": model.kind,
                           "noise_conditional": bool(model.noise_conditional)}
    for attr in ("sha256", "checksum", "file", "path"):
        v = getattr(model, attr, None)
        if v is not None and not callable(v):
            rec[attr] = str(v)
    entry = getattr(model, "entry", None)  # registry handles keep their manifest entry
    if isinstance(entry, dict):
        for key in ("sha256", "file"):
            if key in entry and key not in rec:
                rec[key] = entry[key]
    if "sha256" not in rec and "checksum" not in rec:
        rec["sha256"] = None  # analytic models have no weights file
    return rec


def _to_rgb(images) -> "Any":
    """(N, C, H, W) in [-1, 1] → uint8 (N, H', W', 3) for PNGs.

    RGB images go through ``conceptlang.data.to_uint8``; one channel is shown as grey; any other
    channel count (the analytic 2-D Gaussians) is drawn as a point on a 32×32 canvas, x to the
    right and y down, so a grid of samples shows where they fell."""
    import numpy as np

    n, c, h, w = images.shape
    if c == 3:
        from conceptlang.data import to_uint8

        return to_uint8(images)
    if c == 1:
        g = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        return np.repeat(g, 3, axis=3)
    size = 32
    out = np.zeros((n, size, size, 3), dtype=np.uint8)
    out[:, :, size // 2, :] = 40  # axes, so the origin is visible
    out[:, size // 2, :, :] = 40
    pts = images.reshape(n, c, -1)[:, :2, 0].clamp(-1, 1).numpy()
    cols = np.clip(((pts[:, 0] + 1) / 2 * (size - 1)).round().astype(int), 0, size - 1)
    rows = np.clip(((pts[:, 1] + 1) / 2 * (size - 1)).round().astype(int), 0, size - 1)
    for i in range(n):
        r0, r1 = max(rows[i] - 1, 0), min(rows[i] + 2, size)
        c0, c1 = max(cols[i] - 1, 0), min(cols[i] + 2, size)
        out[i, r0:r1, c0:c1] = (255, 220, 60)
    return out


def _judge(domain: str, images_uint8, expr) -> dict[str, Any]:
    """Judged labels and validity when a judge exists for the domain."""
    import numpy as np

    from conceptlang.errors import ModelError, NameResolutionError
    from conceptlang.io import jsonable
    from conceptlang.judge.load import load_judge

    try:
        judge = load_judge(domain)
    except ModelError as err:
        return {"available": False, "reason": str(err).splitlines()[0]}

    from conceptlang.syntax.objects import expected_objects

    # scenes: the objects the expression places (one, or one per distinct position); faces: one
    expected = expected_objects(expr) if domain == "scenes" else 1
    labels = judge.labels(images_uint8)
    valid = np.asarray(judge.valid(images_uint8, n_objects=expected), dtype=bool)
    rec: dict[str, Any] = {"available": True, "expected_objects": jsonable(expected), "valid": valid.tolist(),
                           "labels": jsonable(labels)}
    try:
        from conceptlang.syntax import evaluate

        sat = [bool(evaluate(expr, lab)) for lab in labels]
        rec["satisfied"] = sat
        rec["accuracy"] = float(np.mean(np.asarray(sat) & valid)) if len(sat) else None
    except NameResolutionError as err:  # the judge does not label every concept of the expression
        rec["satisfied"] = None
        rec["reason"] = str(err).splitlines()[0]
    return rec


def _grid_shape(n: int, image_shape: tuple[int, ...], scale: int | None) -> tuple[int, int, int]:
    """(height, width, scale) in pixels of the PNG grid of ``n`` samples, as ``io.image_grid``
    tiles them (ceil(sqrt(n)) columns, 2 px padding) and ``_to_rgb`` draws them."""
    import math

    c, h, w = image_shape
    if c not in (1, 3):
        h = w = 32  # a point on a 32×32 canvas
    up = scale or (4 if h >= 16 else 1)
    cols = math.isqrt(n - 1) + 1 if n > 1 else 1
    rows = -(-n // cols)
    return (rows * (h + 2) + 2) * up, (cols * (w + 2) + 2) * up, up


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_size(n: int, image_shape: tuple[int, ...], scale: int | None, per_image: str | None,
                gif: str | None = None) -> bool:
    """Refuse up front what cannot be done at this -n; True when the grid PNG is written.

    The grid must stay within GRID_MAX_PIXELS (else --per-image writes the samples, without a
    grid), and so must each --per-image PNG and each GIF frame (the first chains' grid) at this
    --scale; every sample is held in memory until the end (as float32, then as RGB bytes), so
    that must fit in the memory available now."""
    from conceptlang.errors import SamplingError
    from conceptlang.sampling.api import MAX_FRAME_CHAINS

    gh, gw, up = _grid_shape(n, image_shape, scale)
    one_h, one_w, _ = _grid_shape(1, image_shape, scale)
    checks = [(per_image, "--per-image", "one sample", ((one_h // up) - 4) * up, ((one_w // up) - 4) * up),
              (gif, "--gif", "a frame", *_grid_shape(min(n, MAX_FRAME_CHAINS), image_shape, scale)[:2])]
    for given, option, what, h, w in checks:
        if given is not None and h * w > GRID_MAX_PIXELS:
            raise click.UsageError(f"{option} at --scale {up}: {what} would be {w}×{h} pixels, more than the "
                                   f"{GRID_MAX_PIXELS:,} that Pillow will read back; use a smaller --scale")
    grid = gh * gw <= GRID_MAX_PIXELS
    if not grid and per_image is None:
        smaller = " or --scale 1," if up > 1 and gh * gw // (up * up) <= GRID_MAX_PIXELS else ""
        raise click.UsageError(
            f"-n {n}: the grid of {n} samples would be {gw}×{gh} pixels, more than the {GRID_MAX_PIXELS:,} that "
            f"Pillow (and `conceptlang judge`) will read back; use a smaller -n,{smaller} or write one PNG per "
            "sample with --per-image DIR (the grid is then left out)")
    c, h, w = image_shape
    rh, rw = (h, w) if c in (1, 3) else (32, 32)
    need = n * (c * h * w * 4 + rh * rw * 3) + (gh * gw * 3 * 2 if grid else 0)
    if gif is not None:
        fh, fw, _ = _grid_shape(min(n, MAX_FRAME_CHAINS), image_shape, scale)
        need += GIF_FRAMES * fh * fw * 3
    have = _available_memory()
    if have is not None and need > have:
        raise SamplingError(
            f"-n {n}: the samples need about {need / 2**30:,.1f} GiB of memory (all {n} are kept until the end), "
            f"more than the {have / 2**30:,.1f} GiB available; sample fewer per run (runs with different "
            "--seed values draw different samples)")
    return grid


def _check_outputs(out: Path, sidecar: Path, per_image: str | None, gif: str | None) -> None:
    """Every output can be written: checked before compiling and sampling, so a bad path fails
    in a moment, not after the work, and nothing is left half-written."""
    from conceptlang.io import check_dir_output, check_file_output

    check_file_output(out, "-o/--output")
    check_file_output(sidecar, "the JSON sidecar")
    if per_image is not None:
        check_dir_output(per_image, "--per-image")
    if gif is not None:
        check_file_output(gif, "--gif")


def _write_gif(path: Path, frames, scale: int) -> None:
    """Frames: per chain (F, C, H, W) → an animated GIF of the chains' grid over time."""
    import torch
    from PIL import Image

    from conceptlang.io import atomic_path, image_grid

    stacked = torch.stack(frames, 1)  # (F, K, C, H, W)
    pics = []
    for t in range(stacked.shape[0]):
        grid = image_grid(_to_rgb(stacked[t]))
        img = Image.fromarray(grid)
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        pics.append(img)
    with atomic_path(path) as tmp:
        pics[0].save(tmp, format="GIF", save_all=True, append_images=pics[1:], duration=80, loop=0)


def torchrun_rank(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) of this process: under torchrun (WORLD_SIZE > 1) it joins the
    process group (gloo on CPU, NCCL on CUDA) and samples its share of the chains; otherwise
    (0, 1, device)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, device
    import torch

    from conceptlang.models.training import init_distributed

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return init_distributed(device)


_SAMPLE_ARGUMENTS = ("sampler", "steps", "batch_size", "log_z", "draws")  # sample()'s own, not sampler settings


def _check_sampler_settings(graph, sampler_kw: dict[str, Any]) -> None:
    """The sampler and its settings from the command line against the compiled graph, before any
    sampling: a setting the sampler does not have, or one out of its range, is a usage error.
    --max-nfe (a setting of the ODE solvers only) gets its own message naming the samplers with it."""
    from conceptlang.errors import CompileError, SamplingError
    from conceptlang.sampling.api import resolve_settings
    from conceptlang.sampling.samplers import SAMPLERS

    user = {k: v for k, v in sampler_kw.items() if k not in _SAMPLE_ARGUMENTS}
    try:
        if user.get("max_nfe") is not None:
            name = resolve_settings(graph, sampler_kw["sampler"], None, {})[0]
            if SAMPLERS[name].budget_steps is None:
                budgeted = ", ".join(k for k, spec in SAMPLERS.items() if spec.budget_steps is not None)
                raise click.UsageError(f"--max-nfe: the {name} sampler has no setting max_nfe (a budget of network "
                                       f"evaluations per sample); the samplers with one are {budgeted} (--sampler)")
        resolve_settings(graph, sampler_kw["sampler"], sampler_kw["steps"], user)
    except (SamplingError, CompileError) as err:
        raise click.UsageError(str(err)) from None


@click.command("sample")
@_common_compile_options
@click.option("-n", "--num", "n", type=click.IntRange(min=1), default=16, show_default=True, help="Number of samples.")
@click.option("-o", "--output", default="samples.png", show_default=True, metavar="PNG",
              help="PNG grid to write; a JSON sidecar goes next to it (same name, .json).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Langevin steps [default: the registry's].")
@click.option("--seed", type=click.IntRange(min=0, max=SEED_MAX), default=0, show_default=True,
              help="Seed of the chains, 0 to 2^64-1.")
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default=None,
              help="Sampler [default: the registry's; annealed for noise-conditional models, else langevin].")
@device_option
@threads_option
@click.option("--step-size", type=float, default=None, help="Langevin step size [default: the registry's].")
@click.option("--noise-scale", type=float, default=None,
              help="Langevin noise (langevin: the noise std per step; annealed: a factor on the exact noise).")
@click.option("--clip-denoised/--no-clip-denoised", default=None,
              help="annealed: clip each step's denoised estimate to the data box "
                   "[default: the registry's].")
@click.option("--restarts", type=click.IntRange(min=0), default=None,
              help="annealed and the solvers (heun, dpmpp_2m, dpmpp_2m_sde, dpmpp_3m): re-noise the finished chains to --restart-sigma and "
                   "sample down again this many times (Restart sampling) [default: 0].")
@click.option("--restart-sigma", type=float, default=None, help="The noise level restarts lift the chains to.")
@click.option("--churn", "s_churn", type=float, default=None,
              help="the solvers: EDM's stochastic churn S_churn (0: none) [default: the registry's].")
@click.option("--s-noise", "s_noise", type=click.FloatRange(min=0), default=None,
              help="the solvers: a factor on the fresh noise they draw (churn, dpmpp_2m_sde's steps, restarts); "
                   "1 keeps each level's law, below 1 a colder chain [default: the registry's, else 1].")
@click.option("--eta", type=click.FloatRange(min=0), default=None,
              help="dpmpp_2m_sde: the fresh noise each step adds (0: the ODE, 1: the reverse-time SDE) "
                   "[default: the registry's, else 1].")
@click.option("--eta-sigma-min", "eta_sigma_min", type=click.FloatRange(min=0), default=None, metavar="SIGMA",
              help="dpmpp_2m_sde: add the fresh noise only on steps from noise levels at or above SIGMA, the ODE "
                   "step below [default: the registry's, else 0: every step].")
@click.option("--max-nfe", "max_nfe", type=click.IntRange(min=1), default=None, metavar="N",
              help="the solvers (heun, dpmpp_2m, dpmpp_2m_sde, dpmpp_3m): at most N network evaluations per sample; "
                   "caps the steps to the most that fit [default: the registry's budget, which an explicit --steps "
                   "overrides unless --max-nfe is given too].")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Chains run at once (bounds the sampler's memory; a larger -n runs in batches).")
@click.option("--per-image", "per_image", metavar="DIR", default=None,
              help="Also write one PNG per sample into DIR (alone, without the grid, when the grid would be too large).")
@click.option("--gif", metavar="GIF", default=None, help="Write an animated GIF (a .gif file) of the first chains.")
@click.option("--scale", type=click.IntRange(min=1), default=None, help="Upscale PNGs by this factor [default: 4].")
@click.option("--estimate-log-z", is_flag=True,
              help="Draw OR disjuncts ∝ their estimated partition functions instead of equally "
                   "(explicit models; reliable in low dimension).")
@click.option("--draws", type=click.Choice(list(_DRAW_MODES)), default="spread", show_default=True,
              help="The chains' own positions (drawn per chain from the data): drawn together so that they cover "
                   "the region evenly, each still distributed as the data's (spread), or independently.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON sidecar to stdout.")
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: on a terminal].")
@_grouped(compile_opts=COMPILE_OPTIONS, sampler_opts=SAMPLER_OPTIONS, outputs=OUTPUT_OPTIONS)
def sample_cmd(expression, file, models, n, seed, device, threads, compile_opts, sampler_opts, outputs) -> None:
    """Sample N images from the composed energy of EXPRESSION; write a PNG grid and a JSON sidecar.

    \b
    Examples:
      conceptlang sample "(male & smiling) | ~black_hair" -n 16 -o faces.png
      conceptlang sample "shape.circle & color.red" -n 4 --steps 5 --seed 1 --device cpu -o s.png
      conceptlang sample "red | green" --models analytic -n 64 -o gauss.png
    """
    import warnings

    from conceptlang import __version__
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.io import encode_png, image_grid, save_png, write_json, write_output_pair
    from conceptlang.sampling import sample

    output, per_image, gif, scale = outputs["output"], outputs["per_image"], outputs["gif"], outputs["scale"]
    text = _expression_text(expression, file)
    set_threads(threads)
    out = Path(output)
    if out.suffix.lower() != ".png":
        raise click.UsageError(f"-o/--output must be a .png file, got {output!r}")
    if gif is not None and Path(gif).suffix.lower() != ".gif":
        raise click.UsageError(f"--gif must name a .gif file, got {gif!r}")
    sidecar = out.with_suffix(".json")
    _check_outputs(out, sidecar, per_image, gif)
    options = _checked_compile_options(compile_opts)
    rank, world, device = torchrun_rank(device)
    progress = outputs["progress"] and rank == 0
    if world > 1:  # one chunk of chains per rank at least (chunk k runs on rank k mod W)
        sampler_opts = {**sampler_opts, "batch_size": min(sampler_opts["batch_size"], -(-n // world))}
    t_start = time.perf_counter()
    registry = load_registry_for(models)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = compile_expr(text, registry, **options)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    with_grid = _check_size(n, graph.image_shape, scale, per_image, gif)
    if not with_grid:
        click.echo(f"warning: the grid of {n} samples would be too large; writing the samples to {per_image} "
                   "and the sidecar only", err=True)
    t_compiled = time.perf_counter()
    sampler_kw = dict(sampler_opts)
    sampler_kw["log_z"] = "estimate" if sampler_kw.pop("estimate_log_z") else None
    _check_sampler_settings(graph, sampler_kw)
    with warnings.catch_warnings(record=True) as sampling_caught:  # e.g. a one-level sampler on annealed models
        warnings.simplefilter("always")
        result = sample(graph, n, seed=seed, device=device, progress=progress, frames=GIF_FRAMES if gif else 0,
                        **sampler_kw)
    if rank != 0:  # under torchrun: every rank sampled its chunks, rank 0 has them all and writes
        return
    for w in sampling_caught:
        click.echo(f"warning: {w.message}", err=True)
    caught = [*caught, *sampling_caught]
    rgb = _to_rgb(result.images)  # (N, H, W, 3) uint8
    groups = None if result.branches is None else graph.branch_groups(result.branches)
    up = scale or (4 if rgb.shape[1] >= 16 else 1)
    per_paths = []
    if per_image:
        d = Path(per_image)
        for i in range(rgb.shape[0]):
            p = d / f"sample_{i:04d}.png"
            save_png(p, rgb[i], scale=up)
            per_paths.append(str(p))
    if gif:
        _write_gif(Path(gif), result.frames, up)
    record: dict[str, Any] = {
        "conceptlang_version": __version__,
        "expression": text,
        "domain": graph.domain,
        "graph": graph.to_json(),
        "models": [_model_record(m) for m in graph.models],
        "model_set": graph.model_set,  # {"name", "path", "reason"} when the compiler chose another set
        "sampler": result.settings,
        "seed": seed,
        "n": n,
        "device": result.device,
        "branch_counts": result.branch_counts,
        "branch_groups": None if groups is None else [{"branch": t, "count": c} for t, c in groups],
        "branches": None if result.branches is None else result.branches.tolist(),
        "timing": {
            "compile_seconds": round(t_compiled - t_start, 4),
            "sample_seconds": round(result.seconds, 4),
            "images_per_second": round(n / result.seconds, 3) if result.seconds > 0 else None,
            "total_seconds": round(time.perf_counter() - t_start, 4),
        },
        "outputs": {"grid": str(out) if with_grid else None, "per_image": per_paths or None, "gif": gif},
        "image_sha256": hashlib.sha256(rgb.tobytes()).hexdigest(),
        "warnings": [str(w.message) for w in caught],
        "judge": _judge(graph.domain, rgb, graph.expr) if rgb.shape[-1] == 3 and result.images.shape[1] == 3
        else {"available": False, "reason": "images are not RGB"},
    }
    if with_grid:  # the PNG, then the sidecar naming its sha256, published together
        write_output_pair(out, encode_png(image_grid(rgb), scale=up), sidecar, record)
    else:
        write_json(sidecar, record)
    if outputs["as_json"]:
        click.echo(json.dumps(record, indent=2))
    else:
        shares = ""
        if groups is not None:
            shares = ", branches " + ", ".join(f"{t} {c}" for t, c in groups)
        nfe, budget = result.settings.get("nfe"), result.settings.get("max_nfe")
        click.echo(f"wrote {out if with_grid else per_image} ({n} samples, {result.settings['sampler']} "
                   f"{result.settings['total_steps']} steps"
                   f"{'' if nfe is None else f', {nfe:g} network evaluations per sample'}"
                   f"{'' if budget is None else f' (at most {budget})'}, "
                   f"{result.seconds:.2f} s on {result.device}{shares}) and {sidecar}")


def register(group: click.Group) -> None:
    group.add_command(sample_cmd)
    group.add_command(explain_cmd)
