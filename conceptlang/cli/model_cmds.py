"""``conceptlang train`` and ``conceptlang models``: training concept models and listing the registry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from conceptlang.cli.common import device_option, models_folder


def _number_list(text: str, cast, option: str, what: str) -> list:
    """'32,64,96' → [32, 64, 96] with ``cast``; a usage error (exit 2) naming the option otherwise."""
    try:
        return [cast(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{option} must be comma-separated {what}, got {text!r}") from None


def _parse_splits(text: str) -> dict[str, float]:
    """``train`` or ``train:0.85,two_objects:0.15`` → {split: weight}."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, w = part.strip().partition(":")
        try:
            out[name] = float(w) if w else 1.0
        except ValueError:
            raise click.BadParameter(f"bad split weight in {part!r} (use NAME or NAME:WEIGHT)", param_hint="'--split'") from None
        if not (math.isfinite(out[name]) and out[name] > 0):
            raise click.BadParameter(f"split weights must be finite and > 0, got {part!r}", param_hint="'--split'")
    return out


# Settings that served single experiments, kept out of `train --help`: --config FILE sets them.
EXPERIMENT_SETTINGS = {"blur": [], "blur_of": "rgb", "cutout": 0.0, "cutout_form": "rect",
                       "p_mean": -1.2, "p_std": 1.2, "low_share": 0.0, "low_mean": -3.7, "low_std": 0.5,
                       "haze": 0.0, "haze_below": 0.2}
# conceptlang.models.training's CUTOUT_FORMS, spelled out (importing it loads torch); tests check both agree.
CUTOUT_FORMS = ("rect", "rotated", "multi")


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Each --config setting's check and, for the message, what it must be.
_SETTING_RULES = {
    "blur": (lambda v: isinstance(v, list) and all(_real(w) and w > 0 for w in v), "a list of widths > 0 (pixels)"),
    "blur_of": (lambda v: v in ("rgb", "max"), "'rgb' or 'max'"),
    "cutout": (lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "cutout_form": (lambda v: v in CUTOUT_FORMS, "'rect', 'rotated' or 'multi'"),
    "p_mean": (_real, "a number"),
    "p_std": (lambda v: _real(v) and v > 0, "a number > 0"),
    "low_share": (lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "low_mean": (_real, "a number"),
    "low_std": (lambda v: _real(v) and v > 0, "a number > 0"),
    "haze": (lambda v: _real(v) and v >= 0, "a number >= 0 (grey levels)"),
    "haze_below": (lambda v: _real(v) and v > 0, "a number > 0"),
}


def _experiment_settings(path: Path | None) -> dict:
    """``--config``: a JSON object of :data:`EXPERIMENT_SETTINGS` keys; a usage error names what is wrong."""
    settings = {k: (list(v) if isinstance(v, list) else v) for k, v in EXPERIMENT_SETTINGS.items()}
    if path is None:
        return settings
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise click.UsageError(f"--config {path}: cannot read JSON ({err})") from None
    if not isinstance(data, dict):
        raise click.UsageError(f"--config {path}: expected a JSON object, got {type(data).__name__}")
    for key, value in data.items():
        if key not in EXPERIMENT_SETTINGS:
            raise click.UsageError(f"--config {path}: unknown setting {key!r} (settings: {', '.join(EXPERIMENT_SETTINGS)})")
        check, want = _SETTING_RULES[key]
        if not check(value):
            raise click.UsageError(f"--config {path}: {key} must be {want}, got {value!r}")
        settings[key] = [float(v) for v in value] if key == "blur" else (float(value) if _real(value) else value)
    return settings


@click.command("train")
@click.argument("domain", required=False)
@click.argument("family", default="all")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Train on a labelled image folder instead of a procedural DOMAIN: a `conceptlang data` "
                   "folder (dataset.json, labels.jsonl, images/) or a CelebA root (img_align_celeba/, "
                   "list_attr_celeba.txt). Its images are streamed from disk by --data-workers processes.")
@click.option("--attributes", default=None, metavar="A,B,…",
              help="CelebA: the attributes that become concepts (named lowercased: Black_Hair → black_hair) "
                   "[default: Male,Smiling,Black_Hair,Blond_Hair,Brown_Hair,Eyeglasses,Bald,Young].")
@click.option("--hair-family", is_flag=True,
              help="CelebA: group the chosen hair attributes (Black/Blond/Brown/Gray_Hair, Bald) into one exclusive family 'hair'.")
@click.option("--image-size", type=click.Choice(["32", "64", "128"]), default=None,
              help="Train at this side: images are centre-cropped and resized, and the U-Net gets one level per "
                   "halving down to 8×8 [default: the domain's or data folder's; CelebA 64].")
@click.option("--method", type=click.Choice(["denoise", "dsm", "cd"]), default="denoise", show_default=True,
              help="denoise: implicit noise-predicting U-Net; dsm/cd: explicit scalar energy.")
@device_option
@click.option("--iters", type=click.IntRange(min=0), default=None, help="Train until this iteration (default: the config's).")
@click.option("--resume", is_flag=True, help="Continue from the run folder's checkpoint.")
@click.option("--out", "out_dir", default=None, help="Run folder (default runs/<name>).")
@click.option("--name", default=None, help="Model name (default <domain>-joint or <domain>-<family>).")
@click.option("--split", "split", default="train", show_default=True,
              help="Data split(s), optionally weighted: train or train:0.85,two_objects:0.15. "
                   "CelebA: its partition, train, valid, test or all.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Peak learning rate (after a 200-iteration warm-up).")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
              help="cosine: decay from --lr to --lr-min over the run's iterations.")
@click.option("--lr-min", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Final learning rate of a cosine schedule.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the initialisation, noise and dropout draws.")
@click.option("--data-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the training images (a warm-started run sees new images with a new one).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch.set_num_threads for this run.")
@click.option("--arch", type=click.Choice(["unet", "pixel"]), default="unet", show_default=True,
              help="Denoiser: the U-Net, or a per-pixel net that cannot see shape (a colour model "
                   "trained on one shape then carries no outline; docs/models.md).")
@click.option("--widths", default=None,
              help="Channel width per resolution (--arch pixel: per per-pixel block) [default: 32,64,96 at 32 px, "
                   "32,64,96,128 at 64 px, 32,64,96,128,128 at 128 px].")
@click.option("--refine-blocks", type=click.IntRange(min=0), default=0, show_default=True,
              help="U-Net: residual blocks at full resolution after the decoder, each starting as the "
                   "identity, so --init-from a network without them starts from what it computed.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--cond-dropout", type=click.FloatRange(min=0, max=1, max_open=True), default=0.3, show_default=True)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="JSON", help="Experimental settings as a JSON object: blur, blur_of (--arch pixel), cutout, "
                                   "cutout_form; the noise levels p_mean, p_std, low_share, low_mean, low_std; "
                                   "haze, haze_below (docs/models.md, \"Training\").")
@click.option("--spatial/--no-spatial", default=True, show_default=True,
              help="Implicit models: also give (x, y) families to the network as a Gaussian bump image.")
@click.option("--init-from", default=None, help="Warm start from this run folder's (or checkpoint's) weights.")
@click.option("--data-workers", type=click.IntRange(min=0), default=None,
              help="Processes that draw or read the next training images ahead of the loop; same batches "
                   "[default: 2 with --data, else 0].")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Set --iters so the run ends in about SECONDS: time a throwaway copy of the run first.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(domain, family, data_dir, attributes, hair_family, image_size, method, device, iters, resume, out_dir, name,
              split, batch_size, lr, lr_schedule, lr_min, seed, data_seed, threads, arch, widths, refine_blocks,
              checkpoint_every, cond_dropout, config_file, spatial, init_from, data_workers, time_budget, quiet):
    """Train a concept model of DOMAIN for FAMILY (or all families: one joint model with per-family slots),
    or, with --data DIR, a joint model of every family of a labelled image folder.

    \b
      conceptlang train faces --iters 4000
      conceptlang train --data data/faces64 --iters 20000 --out runs/faces64
      conceptlang train --data CELEBA --attributes Male,Smiling,Black_Hair --image-size 64 --out runs/celeba
      torchrun --standalone --nproc_per_node 2 -m conceptlang train --data DIR --out RUN

    Checkpoints (model, optimizer, RNG and data-stream position) are written atomically to the
    run folder; --resume continues exactly where the last checkpoint left off. A cosine schedule
    follows the run's --iters: resuming with a larger --iters stretches what is left of it.
    --time-budget (e.g. a GPU lease) times 120 iterations of a throwaway copy and sets --iters
    from that rate (90% of it); the chosen count is saved in config.json, so the run can be
    repeated with --iters.

    A --data run folder is also a models folder: every checkpoint writes the EMA weights and a
    manifest.json (domain and families from the data), so `conceptlang sample EXPR --models RUN`
    works during and after training. Under torchrun the processes train one model together
    (DistributedDataParallel: gloo on CPU, NCCL on CUDA); --batch-size is the global batch, each
    process trains on its slice of it, and process 0 writes the run folder. See docs/training.md.
    """
    import time

    import torch

    from conceptlang.errors import DataError, ModelError
    from conceptlang.models.training import UNET_WIDTHS, TrainConfig, Trainer, domain_of, iters_for_budget, measure_rate, set_threads

    rank, world, device = _train_processes(device)
    say = (lambda msg: click.echo(msg, err=True)) if rank == 0 else (lambda msg: None)
    families: tuple[str, ...] = ()
    data = None
    size = int(image_size) if image_size else 0
    if data_dir is not None:
        if domain is not None:
            raise click.UsageError(f"give a procedural DOMAIN or --data, not both (got {domain!r} and --data {data_dir})")
        if method != "denoise":
            raise click.UsageError("--data trains denoising (implicit) models: --method denoise")
        if time_budget is not None and resume:
            raise click.UsageError("give --iters with --resume, not --time-budget")
    elif domain is None and not (resume and out_dir and (Path(out_dir) / "config.json").is_file()):
        raise click.UsageError("give a procedural DOMAIN (scenes, faces) or --data DIR (or --resume --out RUN)")
    elif attributes or hair_family:
        raise click.UsageError("--attributes and --hair-family are options of --data (a CelebA root)")
    if lr_min > lr:
        raise click.BadParameter(f"the final learning rate must not exceed --lr ({lr:g}), got {lr_min:g}",
                                 param_hint="'--lr-min'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda asked for, but no CUDA device is available")
    set_threads(threads)
    if data_workers is None:
        data_workers = 2 if data_dir is not None or (resume and out_dir and _run_uses_data(out_dir)) else 0
    run = Path(out_dir) if out_dir else None
    from conceptlang.io import check_dir_output

    if run is not None:
        check_dir_output(run, "--out")  # before any data is read or anything trains
    if run is None and resume:
        if data_dir is not None:
            raise click.UsageError("--resume needs the run folder: --out RUN")
        run = Path("runs") / (name or (f"{domain}-joint" if family == "all" else f"{domain}-{family}"))
    if resume and run is not None and (run / "config.json").exists():
        cfg = TrainConfig.from_json(json.loads((run / "config.json").read_text()))
        if iters is not None:
            cfg.iters = iters
        name = cfg.name
        if cfg.data:
            from conceptlang.data.labelled import open_data

            data = open_data(cfg.data, image_size=domain_of(cfg).image_size, **cfg.data_options)
    else:
        if data_dir is not None:
            from conceptlang.data.labelled import open_data

            opts = {"attributes": attributes, "group_hair": hair_family, "split": split}
            data = open_data(data_dir, image_size=size or None, **opts)  # checked whole before anything trains
            dom = data.domain
            size = dom.image_size
            say(f"{data_dir}: {len(data)} images, {dom.name} families "
                + ", ".join(f"{f.name}({'/'.join(f.values)})" if len(f.values) > 1 else f.name for f in dom.families)
                + f", trained at {size} px")
            opts = {k: v for k, v in (("attributes", ",".join(data.info["attributes"]) if "attributes" in data.info else None),
                                      ("group_hair", hair_family), ("split", split)) if v}
            splits = {"train": 1.0}
        else:
            dom = domain_of(TrainConfig(name="", domain=domain, image_size=size))
            if family != "all":
                try:
                    dom.family(family)
                except DataError as err:  # a usage error: the FAMILY argument
                    raise click.BadParameter(err.message, param_hint="FAMILY") from None
                families = (family,)
            splits = _parse_splits(split)
            from conceptlang.data import check_split

            try:
                for k in splits:
                    check_split(dom.name, k)
            except DataError as err:
                raise click.BadParameter(err.message, param_hint="'--split'") from None
        name = name or (f"{dom.name}-joint" if not families else f"{dom.name}-{family}")
        run = run or Path("runs") / name
        width_t = _number_list(widths, int, "--widths", "integers") if widths else list(UNET_WIDTHS.get(dom.image_size, UNET_WIDTHS[32]))
        if not width_t or min(width_t) < 1:
            raise click.BadParameter(f"must be positive integers, got {widths!r}", param_hint="'--widths'")
        extra = _experiment_settings(config_file)
        blur_t, blur_of = extra["blur"], extra["blur_of"]
        if blur_t and arch != "pixel":
            raise click.UsageError(f"{config_file}: blur is an option of --arch pixel")
        if blur_of != "rgb" and not blur_t:
            raise click.UsageError(f"{config_file}: blur_of is an option of blur")
        net: dict = {}
        if blur_t:
            net["blur"] = blur_t
            if blur_of != "rgb":
                net["blur_of"] = blur_of
        if refine_blocks and (method != "denoise" or arch != "unet"):
            raise click.UsageError("--refine-blocks is an option of the U-Net (--arch unet, --method denoise)")
        if refine_blocks:
            net["refine_blocks"] = refine_blocks
        if method == "denoise":
            net["widths"] = width_t
            xy = [f.name for f in dom.families if f.kind != "discrete" and len(f.params) == 2 and (not families or f.name in families)]
            if spatial and xy:
                net["spatial"] = xy
        cfg = TrainConfig(name=name, domain=dom.name, families=families, method=method, splits=splits,
                          batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, lr_min=lr_min, seed=seed,
                          data_seed=data_seed, checkpoint_every=checkpoint_every,
                          cond_dropout=cond_dropout, net=net, arch=arch,
                          # cutout, its form and the noise levels (blur goes into ``net`` above)
                          **{k: v for k, v in extra.items() if k in TrainConfig.__dataclass_fields__},
                          iters=iters if iters is not None else 10000,
                          init_from=str(init_from or ""), image_size=size if (data is not None or size) else 0,
                          data=str(Path(data_dir).resolve()) if data is not None else "",
                          data_options=opts if data is not None else {},
                          data_domain=dom.to_json() if data is not None else {})
    if time_budget is not None and iters is not None:
        raise click.UsageError("give --iters or --time-budget, not both")
    check_dir_output(run, "--out")
    trainer = Trainer(cfg, run, device=device, data_workers=data_workers, data=data)
    if cfg.init_from and not (resume and trainer.checkpoint_path.exists()):
        start = trainer.warm_start(cfg.init_from)
        say(f"{name}: starting from the weights of {cfg.init_from} (iteration {start})")
    if resume:
        if not trainer.checkpoint_path.exists():
            raise ModelError(f"--resume: no checkpoint at {trainer.checkpoint_path}")
        trainer.load()
        say(f"resumed {name} at iteration {trainer.it}")
    if time_budget is not None:
        t0 = time.perf_counter()
        # the probe takes at most a tenth of the budget (a slow CPU run would otherwise spend it all timing)
        rate = measure_rate(cfg, device=device, data_workers=data_workers, steps=120, skip=30,
                            **({"data": data, "max_seconds": time_budget / 10} if data is not None else {}))
        spent = time.perf_counter() - t0
        if spent >= time_budget:
            raise ModelError(f"--time-budget {time_budget:g} s: timing the run alone took {spent:.1f} s; give a larger budget")
        cfg.iters = _same_on_every_rank(iters_for_budget(rate, time_budget - spent, done=trainer.it), world)  # trainer.cfg is cfg
        say(f"{name}: {rate:.1f} it/s on {device}: --iters {cfg.iters} fits {time_budget:g} s")
    trainer.train(progress=not quiet)
    if rank == 0:
        click.echo(f"trained {name} to iteration {trainer.it}; checkpoint {trainer.checkpoint_path}"
                   + (f"; models folder {run} (--models {run})" if trainer.export else ""))


def _train_processes(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) of this process: under torchrun it joins the process group."""
    import torch

    from conceptlang.models.training import init_distributed

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return init_distributed(device)


def _same_on_every_rank(value: int, world: int) -> int:
    """Rank 0's ``value`` on every rank (each rank timed its own copy of the run)."""
    if world <= 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.long)
    dist.broadcast(t, src=0)
    return int(t.item())


def _run_uses_data(out_dir: str) -> bool:
    from pathlib import Path

    try:
        return bool(json.loads((Path(out_dir) / "config.json").read_text()).get("data"))
    except (OSError, ValueError):
        return False


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print {\"models_dir\": ..., \"models\": [...]} as JSON.")
@click.option("--models", "models", metavar="DIR", default=None,
              help="Models folder (default $CONCEPTLANG_MODELS or the shipped models).")
@click.option("--verify", is_flag=True,
              help="Also check every weights file's sha256 against the manifest; exit 1 if any is missing or differs.")
def models_cmd(as_json, models, verify):
    """List the concept models of a models folder (the registry's manifest)."""
    from conceptlang.models.registry import load_registry, verify_weights

    reg = load_registry(models_folder(models) if models is not None else None)
    rows = reg.describe()
    if verify:
        for row, entry in zip(rows, reg.entries):
            row["checksum"] = verify_weights(entry, reg.models_dir)  # "ok" | "missing" | "mismatch"
            row["checksum_ok"] = row["checksum"] == "ok"
    failed = [row for row in rows if verify and not row["checksum_ok"]]
    if as_json:
        click.echo(json.dumps({"models_dir": str(reg.models_dir), "models": rows, "model_sets": reg.set_specs}, indent=2))
        _fail_verification(failed, reg.models_dir)
        return
    click.echo(f"models in {reg.models_dir}:")
    for row in rows:
        fams = ", ".join(
            f"{f}({', '.join(v)})" if isinstance(v, list) and f != "position" else f"{f}({', '.join(map(str, v or []))})"
            for f, v in row["families"].items()
        )
        size = f"{row['bytes'] / 1e6:.1f} MB" if row["bytes"] is not None else "missing"
        it = row["training"].get("iterations")
        line = f"  {row['name']:<22} {row['domain']:<8} {row['kind']:<8} {row['layout']:<10} {size:>8}"
        line += f"  {row['training'].get('method', '?')} {it} it" if it is not None else ""
        before = (row["training"].get("warm_start") or {}).get("iterations")
        line += f" (+{before} before a warm start)" if before is not None and it is not None else ""
        if verify:
            line += {"ok": "  checksum ok", "missing": "  WEIGHTS FILE MISSING", "mismatch": "  CHECKSUM MISMATCH"}[row["checksum"]]
        click.echo(line)
        if row["finish_below"] is not None:
            click.echo(f"      (no concepts)  [finishing model: alone below σ = {row['finish_below']:g}, finish_below]")
        else:
            click.echo(f"      {fams}" + ("  [prior]" if row["prior"] else ""))
        if row["concept_weights"]:
            click.echo("      calibrated weights: " + ", ".join(f"{c} ×{w:g}" for c, w in row["concept_weights"].items()))
        if row["sigma_range"] is not None:
            lo, hi = row["sigma_range"]
            click.echo(f"      acts at noise levels σ in [{lo:g}, {'∞' if hi is None else f'{hi:g}'}] only (sigma_range)")
        if row["guidance_summary"]:
            click.echo(f"      sampling: {row['guidance_summary']}")
        if row["max_objects"] > 1:
            click.echo(f"      trained on up to {row['max_objects']} objects per image (max_objects)")
        if row["autoguide"]:
            g = row["autoguide"]
            size = f"{g['bytes'] / 1e6:.1f} MB" if g["bytes"] is not None else "missing"
            within = " at σ in [{:g}, {:g}]".format(*g["interval"]) if g.get("interval") else ""
            click.echo(f"      autoguidance: guide {g['file']} ({size}), weight {g['weight']:g}{within}")
    for spec in reg.set_specs:
        about = f": {spec['about']}" if spec.get("about") else ""
        click.echo(f"model set {spec['name']!r} ({reg.models_dir / spec['path']}){about}; the compiler uses it for "
                   "expressions the models above were not trained for")
    _fail_verification(failed, reg.models_dir)


def _fail_verification(failed: list[dict], models_dir) -> None:
    """Exit 1 naming every model whose weights file is missing or has another checksum."""
    if failed:
        what = "; ".join(f"{r['name']}: {r['file']} {'missing' if r['checksum'] == 'missing' else 'checksum mismatch'}"
                         for r in failed)
        click.echo(f"error: {len(failed)} weights file(s) in {models_dir} failed verification ({what})", err=True)
        click.get_current_context().exit(1)


def register(group: click.Group) -> None:
    group.add_command(train_cmd)
    group.add_command(models_cmd)
