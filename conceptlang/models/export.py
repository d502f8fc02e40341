"""Exporting a training run into a models folder: fp16 safetensors + config sidecar + manifest entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from conceptlang.errors import ModelError
from conceptlang.io import atomic_path, sha256_file, write_json
from conceptlang.models.manifest import (
    DEFAULT_ENERGY,
    FORMAT_VERSION,
    SAMPLING_GUIDANCE_KEYS,
    guide_mismatch,
    is_interval,
    is_positive_number,
    manifest_data,
    write_manifest,
)


def _families_json(slots) -> dict[str, Any]:
    from conceptlang.models.conditions import NONE_TOKEN

    out = {}
    for s in slots:
        if s.kind == "discrete":
            out[s.family] = {"kind": "discrete", "values": [v for v in s.values if v != NONE_TOKEN]}
        else:
            out[s.family] = {"kind": "continuous", "params": list(s.params), "ranges": [list(r) for r in s.ranges]}
    return out


def _warm_start_info(cfg, st: dict) -> dict[str, Any]:
    """``{"warm_start": {"from", "iterations"}}`` for a run that started from another run's weights."""
    if not cfg.init_from:
        return {}
    before = st.get("init_it")  # the trainer stores it in every checkpoint it writes
    info: dict[str, Any] = {"from": cfg.init_from}
    if before is not None:
        info["iterations"] = int(before)
    return {"warm_start": info}


def _portable_config(cfg) -> dict[str, Any]:
    """The run's TrainConfig as JSON for an exported record: a data folder under the working directory
    is written relative to it, so a shipped manifest names no path of the machine that trained it."""
    d = cfg.to_json()
    if d.get("data"):
        try:
            d["data"] = Path(d["data"]).relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            pass  # outside the working directory: the path as the run recorded it
    return d


def _run_state(run_dir: Path, state: dict[str, Any] | None):
    """The trainer's checkpoint dict (given, or read from the run's checkpoint.pt) and its TrainConfig."""
    from conceptlang.models.training import TrainConfig, load_checkpoint

    ckpt = run_dir / "checkpoint.pt"
    if state is None and not ckpt.is_file():
        raise ModelError(f"no checkpoint in {run_dir}")
    st = state if state is not None else load_checkpoint(ckpt, "cpu")
    return st, TrainConfig.from_json(json.loads(st["config"]))


def _write_weights(st: dict[str, Any], cfg, use_ema: bool, path: Path, name: str) -> torch.nn.Module:
    """Write the checkpoint's (EMA) weights to ``path`` as fp16 safetensors; return the network."""
    from safetensors.torch import save_file

    from conceptlang.models.training import build_network

    net = build_network(cfg)
    net.load_state_dict({k: v.detach().cpu() for k, v in st["ema" if use_ema else "net"].items()})
    weights = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(weights, str(tmp), metadata={"format_version": str(FORMAT_VERSION), "name": name})
    return net


CALIBRATED = ("inference", "concept_weights", "sigma_range")  # settings fitted to an entry's weights


def export_run(
    run_dir: str | Path,
    models_dir: str | Path,
    name: str | None = None,
    sampler: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    use_ema: bool = True,
    guidance: float | None = None,
    prior: bool | None = None,
    state: dict[str, Any] | None = None,
    file: str | None = None,
    keep: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write the run's (EMA) weights as fp16 safetensors into ``models_dir`` and upsert its manifest entry.

    An existing entry's ``sampler`` and ``metrics`` are kept unless new ones are given, and so are its
    ``guidance``, ``sampling_guidance``, ``guidance_interval``, ``prior_below`` and ``max_objects``; a calibrated
    inference readout (``inference``), calibrated ``concept_weights`` and a tuned ``sigma_range``
    are dropped, since they belong to the old weights, unless ``keep`` names them (a warm-started
    continuation of the same model whose settings are then measured again; ``inference`` should
    be recalibrated in any case, ``conceptlang calibrate``). ``prior``
    (default: True for a joint model) marks the model whose empty condition is the domain prior.
    ``state`` is the trainer's checkpoint dict (default: read from the run's checkpoint.pt);
    ``file`` the weights file name (default ``<name>.safetensors``).
    """
    unknown = set(keep) - set(CALIBRATED)
    if unknown:
        raise ValueError(f"export_run: keep names {sorted(unknown)}; only {', '.join(CALIBRATED)} can be kept")
    run_dir, models_dir = Path(run_dir), Path(models_dir)
    st, cfg = _run_state(run_dir, state)
    name = name or cfg.name
    file = file or f"{name}.safetensors"
    net = _write_weights(st, cfg, use_ema, models_dir / file, name)
    arch_class = type(net).__name__  # UNet, PixelNet or EnergyNet (registry.ARCHITECTURES)
    write_json(models_dir / f"{name}.json", {"class": arch_class, "config": net.config.to_json(), "training": _portable_config(cfg)})

    data = manifest_data(models_dir, create=True)
    old = next((e for e in data["models"] if e.get("name") == name), {})
    entry = {
        "name": name,
        "domain": cfg.domain,
        "kind": cfg.kind,
        "layout": "joint" if len(net.config.slots) > 1 or not cfg.families else "per-family",
        "families": _families_json(net.config.slots),
        "prior": bool(prior if prior is not None else (not cfg.families or len(net.config.slots) > 1)),
        "architecture": {"class": arch_class, "config": net.config.to_json(),
                         "parameters": sum(p.numel() for p in net.parameters())},
        "energy": old.get("energy", dict(DEFAULT_ENERGY)) if cfg.kind == "implicit" else {},
        "guidance": float(guidance if guidance is not None else old.get("guidance", 1.0)),
        "training": {
            "method": cfg.method, "iterations": int(st["it"]), "seconds": round(float(st["seconds"]), 1),
            "split": cfg.splits, "weights": "ema" if use_ema else "raw", "config": _portable_config(cfg),
            **_warm_start_info(cfg, st),
        },
        "data_split": cfg.splits,
        "sampler": sampler if sampler is not None else old.get("sampler", {}),
        "metrics": metrics if metrics is not None else old.get("metrics", {}),
        "file": file,
        "sha256": sha256_file(models_dir / file),
    }
    if "max_objects" in old:  # what the training covers stays stated (the compiler picks model sets by it)
        entry["max_objects"] = old["max_objects"]
    # sampling settings, kept as ``sampler`` is, and the calibrated ones the caller keeps
    for key in (*SAMPLING_GUIDANCE_KEYS, *keep, *(("concept_weights_above",) if "concept_weights" in keep else ())):
        if key in old:
            entry[key] = old[key]
    data["models"] = [e for e in data["models"] if e.get("name") != name] + [entry]
    data["models"].sort(key=lambda e: (e["domain"], e["name"]))
    write_manifest(models_dir, data)
    return entry


def export_guide(
    run_dir: str | Path,
    models_dir: str | Path,
    model: str,
    weight: float,
    interval: tuple[float, float] | None = None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a run's EMA weights as the autoguidance guide of manifest entry ``model`` and set its
    ``autoguide`` (weights file ``<model>-guide.safetensors``, ``weight``, optional ``interval``).

    The run must train the same conditions as the model (same slots, image size and channels),
    normally with a smaller network and fewer iterations (docs/training.md, "A guide for
    autoguidance"). Nothing is written when the run or the settings are refused.
    Returns the updated entry.
    """
    run_dir, models_dir = Path(run_dir), Path(models_dir)
    data = manifest_data(models_dir, create=False)
    entry = next((e for e in data["models"] if e.get("name") == model), None)
    if entry is None:
        raise ModelError(f"no model {model!r} in {models_dir}")
    if not is_positive_number(weight):
        raise ModelError(f"autoguide weight must be a finite number > 0, got {weight!r}")
    interval = None if interval is None else [float(v) for v in interval]
    if interval is not None and not is_interval(interval):
        raise ModelError(f"autoguide interval must have 0 <= lo < hi, got {interval}")
    st, cfg = _run_state(run_dir, state)
    file = f"{model}-guide.safetensors"
    if file == entry["file"]:
        raise ModelError(f"model {model!r}: its own weights file is {file}; a guide needs another name")
    from conceptlang.models.training import build_network

    key = guide_mismatch(build_network(cfg).config.to_json(), entry["architecture"]["config"])  # before anything is written
    if key is not None:
        raise ModelError(f"run {run_dir} cannot guide model {model!r}: its network's {key} differs from the model's "
                         "(a guide is trained on the same conditions and images)")
    net = _write_weights(st, cfg, True, models_dir / file, f"{model} (autoguide)")
    spec: dict[str, Any] = {
        "file": file,
        "sha256": sha256_file(models_dir / file),
        "architecture": {"class": type(net).__name__, "config": net.config.to_json(),
                         "parameters": sum(p.numel() for p in net.parameters())},
        "weight": float(weight),
        "training": {"method": cfg.method, "iterations": int(st["it"]), "seconds": round(float(st["seconds"]), 1),
                     "config": _portable_config(cfg)},
    }
    if interval is not None:
        spec["interval"] = interval
    entry["autoguide"] = spec
    write_manifest(models_dir, data)  # validates: the guide's conditions must be the model's
    return entry
