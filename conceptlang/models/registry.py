"""The model registry: ``models/manifest.json`` → concept names → (model, condition).

``load_registry(models_dir=None)`` reads and validates a manifest (``None`` → ``$CONCEPTLANG_MODELS``
or the shipped ``models/`` folder). Models are *handles*: their name, kind and image shape come
from the manifest, and the weights are read (sha256-verified, fp16 → fp32) only when a handle is
first evaluated, once per device, into a cache shared by every handle of that model.

Manifest format (``format_version`` 1)::

    {"format_version": 1,
     "models": [{"name": "scenes-joint", "domain": "scenes", "kind": "implicit", "layout": "joint",
                 "families": {"shape": {"kind": "discrete", "values": [...]},
                              "position": {"kind": "continuous", "params": ["x", "y"], "ranges": [[0, 1], [0, 1]]}},
                 "prior": true,
                 "architecture": {"class": "UNet", "config": {...}},
                 "energy": {"sigma_min": 0.02, "sigma_max": 2.0, "levels": 8, "draws": 2, "seed": 0},
                 "training": {...}, "data_split": {...},
                 "sampler": {"sampler": "annealed", "step_size": ..., ...},
                 "metrics": {...}, "file": "scenes-joint.safetensors", "sha256": "..."}]}

``layout`` is ``joint`` (one model, one condition slot per family; the empty condition is the
domain prior) or ``per-family`` (one model per family; a separate entry with ``"prior": true`` and
no families is the prior).

Optional: an entry's ``max_objects`` (integer ≥ 1, default 1) is how many objects per image the
model's training covers (the data of its final runs); the manifest's ``model_sets`` lists other model folders, each ``{"name": ...,
"path": "<folder inside this one>"}``, that the compiler may use for an expression the models
here were not trained for (docs/compiler.md, "Model sets"; :mod:`conceptlang.models.sets`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from conceptlang.interface import Condition, ConceptModel, ConceptRef
from conceptlang.data.domain import Domain, Family
from conceptlang.errors import DataError, ModelError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("implicit", "explicit")
LAYOUTS = ("joint", "per-family")
ARCHITECTURES = ("UNet", "PixelNet", "EnergyNet")
IMPLICIT_ARCHITECTURES = ("UNet", "PixelNet")
_SHA = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _err(where: str, msg: str) -> ModelError:
    return ModelError(f"{where}: {msg}")


def _need(entry: dict, key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in entry:
        raise _err(where, f"missing key {key!r}")
    value = entry[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))):
        tname = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise _err(where, f"{key!r} must be {tname}, got {type(value).__name__} {value!r}")
    return value


def _validate_family(fam: str, spec: Any, where: str) -> None:
    w = f"{where}, family {fam!r}"
    if not isinstance(spec, dict):
        raise _err(w, f"must be an object, got {spec!r}")
    kind = spec.get("kind")
    if kind == "discrete":
        vals = _need(spec, "values", list, w)
        if not vals or not all(isinstance(v, str) and v for v in vals) or len(set(vals)) != len(vals):
            raise _err(w, f"'values' must be distinct non-empty names, got {vals!r}")
    elif kind == "continuous":
        params = _need(spec, "params", list, w)
        ranges = _need(spec, "ranges", list, w)
        if not params or len(ranges) != len(params):
            raise _err(w, "'params' must be non-empty and 'ranges' must give one [lo, hi] per parameter")
        for r in ranges:
            if not (isinstance(r, list) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r) and r[0] < r[1]):
                raise _err(w, f"bad range {r!r} (expected [lo, hi] with lo < hi)")
    else:
        raise _err(w, f"'kind' must be 'discrete' or 'continuous', got {kind!r}")


def validate_manifest(data: Any, source: str = MANIFEST) -> list[dict]:
    """Check a parsed manifest; return its model entries. Raises ModelError naming the problem."""
    if not isinstance(data, dict):
        raise _err(source, f"must be a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise _err(source, f"format_version is {version!r}; this ConceptLang reads format_version {FORMAT_VERSION}")
    models = _need(data, "models", list, source)
    names: set[str] = set()
    covered: dict[tuple[str, str], str] = {}
    priors: dict[str, str] = {}
    for i, entry in enumerate(models):
        where = f"{source}, models[{i}]"
        if not isinstance(entry, dict):
            raise _err(where, "must be an object")
        name = _need(entry, "name", str, where)
        where = f"{source}, model {name!r}"
        if name in names:
            raise _err(where, "duplicate model name")
        names.add(name)
        domain = _need(entry, "domain", str, where)
        kind = _need(entry, "kind", str, where)
        if kind not in KINDS:
            raise _err(where, f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
        layout = _need(entry, "layout", str, where)
        if layout not in LAYOUTS:
            raise _err(where, f"'layout' must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        families = _need(entry, "families", dict, where)
        for fam, spec in families.items():
            _validate_family(fam, spec, where)
            if (domain, fam) in covered:
                raise _err(where, f"family {domain}/{fam} is already served by model {covered[(domain, fam)]!r}")
            covered[(domain, fam)] = name
        if layout == "per-family" and len(families) > 1:
            raise _err(where, "a per-family model serves at most one family")
        if entry.get("prior", layout == "joint"):
            if domain in priors:
                raise _err(where, f"domain {domain!r} already has a prior ({priors[domain]!r})")
            priors[domain] = name
        arch = _need(entry, "architecture", dict, where)
        if arch.get("class") not in ARCHITECTURES:
            raise _err(where, f"architecture.class must be one of {', '.join(ARCHITECTURES)}, got {arch.get('class')!r}")
        if (kind == "implicit") != (arch["class"] in IMPLICIT_ARCHITECTURES):
            raise _err(where, f"kind {kind!r} does not match architecture {arch['class']!r}")
        _need(arch, "config", dict, f"{where}, architecture")
        file = _need(entry, "file", str, where)
        if Path(file).is_absolute() or ".." in Path(file).parts:
            raise _err(where, f"'file' must be a path inside the models folder, got {file!r}")
        sha = _need(entry, "sha256", str, where)
        if not _SHA.match(sha):
            raise _err(where, f"'sha256' must be 64 lowercase hex digits, got {sha!r}")
        guidance = entry.get("guidance", 1.0)
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not guidance > 0:
            raise _err(where, f"'guidance' must be a number > 0, got {guidance!r}")
        if "guidance_interval" in entry:
            _validate_guidance_interval(entry["guidance_interval"], kind, where)
        sampler = entry.get("sampler", {})
        if not isinstance(sampler, dict):
            raise _err(where, f"'sampler' must be an object, got {sampler!r}")
        max_objects = entry.get("max_objects", 1)
        if isinstance(max_objects, bool) or not isinstance(max_objects, int) or max_objects < 1:
            raise _err(where, f"'max_objects' must be an integer ≥ 1 (how many objects per image its training covers), "
                              f"got {max_objects!r}")
        _validate_concept_weights(entry.get("concept_weights", {}), families, where)
        _validate_energy(entry, where)
        if "sigma_range" in entry:
            _validate_sigma_range(entry["sigma_range"], kind, where)
            if entry.get("prior", layout == "joint"):
                raise _err(where, "'sigma_range' is not allowed on the domain's prior model (the prior acts at every noise level)")
        _validate_architecture_config(arch["class"], arch["config"], where)
    _validate_model_sets(data.get("model_sets", []), source)
    for domain in {e["domain"] for e in models}:
        if domain not in priors:
            raise _err(source, f"domain {domain!r} has no prior model (a joint model, or an entry with \"prior\": true)")
    return models


# Bounds on the integer fields of an architecture config: a manifest outside them describes no
# network this code builds (and image_size also bounds the memory one chain takes).
_CONFIG_INT_MAX = {"image_size": 1024, "channels": 64, "blocks_per_level": 16, "emb_dim": 8192, "groups": 1024}
_WIDTH_MAX = 8192


def _validate_architecture_config(cls_name: str, config: dict, where: str) -> None:
    """Check ``architecture.config`` field by field against the network's config dataclass
    (conceptlang.models.networks): known keys only, each of the right type and range, and the
    cross-field rules the network needs (a U-Net halves image_size once per extra width)."""
    import dataclasses

    from conceptlang.models.networks import NETWORKS

    config_class = NETWORKS[cls_name][1]
    w = f"{where}, architecture.config"
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise _err(w, f"unknown key {unknown[0]!r} for a {cls_name} (known: {', '.join(fields)})")
    for key in ("image_size", "widths"):
        if key not in config:
            raise _err(w, f"missing key {key!r}")

    def bad(key: str, what: str) -> ModelError:
        return _err(w, f"{key!r} must be {what}, got {config[key]!r}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for key, value in config.items():
        f = fields[key]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if key == "slots":
            _validate_slots(value, w)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise bad(key, "true or false")
        elif isinstance(default, int):
            hi = _CONFIG_INT_MAX.get(key, 1 << 20)
            if not is_int(value) or not 1 <= value <= hi:
                raise bad(key, f"an integer in [1, {hi}]")
        elif isinstance(default, float):
            if not is_num(value) or not value > 0:
                raise bad(key, "a finite number > 0")
        elif isinstance(default, str):
            if value not in ("rgb", "max"):  # blur_of, the one string field
                raise bad(key, "'rgb' or 'max'")
        elif key == "widths":
            if not (isinstance(value, list) and value and all(is_int(v) and 1 <= v <= _WIDTH_MAX for v in value)):
                raise bad(key, f"a non-empty list of integers in [1, {_WIDTH_MAX}]")
        elif key == "blur":
            size = config["image_size"]
            if not (isinstance(value, list) and all(is_num(v) and 0 < v <= size / 6 for v in value)):
                raise bad(key, "a list of blur widths in (0, image_size/6]")
        elif key == "spatial":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise bad(key, "a list of family names")
    if cls_name == "UNet":
        halvings = len(config["widths"]) - 1
        if config["image_size"] % (1 << halvings):
            raise _err(w, f"'image_size' {config['image_size']} must be divisible by 2^{halvings} "
                          f"(the U-Net halves it once per width after the first)")
        slots = {s["family"]: s for s in config.get("slots", [])}
        for fam in config.get("spatial", []):
            s = slots.get(fam)
            if s is None or s["kind"] != "continuous" or len(s.get("params", [])) != 2:
                raise _err(w, f"'spatial' family {fam!r} must be a continuous slot with two parameters")


def _validate_slots(slots: Any, where: str) -> None:
    """``slots``: the condition slots of a network (see networks.SlotSpec)."""
    if not isinstance(slots, list):
        raise _err(where, f"'slots' must be a list, got {slots!r}")
    seen: set[str] = set()
    for i, s in enumerate(slots):
        w = f"{where}.slots[{i}]"
        if not isinstance(s, dict):
            raise _err(w, f"must be an object, got {s!r}")
        fam = _need(s, "family", str, w)
        if fam in seen:
            raise _err(w, f"duplicate slot for family {fam!r}")
        seen.add(fam)
        kind = _need(s, "kind", str, w)
        values, params, ranges = s.get("values", []), s.get("params", []), s.get("ranges", [])
        unknown = sorted(set(s) - {"family", "kind", "values", "params", "ranges"})
        if unknown:
            raise _err(w, f"unknown key {unknown[0]!r}")
        if not all(isinstance(x, list) for x in (values, params, ranges)):
            raise _err(w, "'values', 'params' and 'ranges' must be lists")
        if kind == "discrete":
            if not values or not all(isinstance(v, str) for v in values):
                raise _err(w, f"a discrete slot needs a non-empty list of value names, got {values!r}")
        elif kind == "continuous":
            if not params or not all(isinstance(p, str) for p in params):
                raise _err(w, f"a continuous slot needs a non-empty list of parameter names, got {params!r}")
            if ranges and len(ranges) != len(params):
                raise _err(w, "'ranges' must give one [lo, hi] per parameter")
            for r in ranges:
                if not (isinstance(r, list) and len(r) == 2
                        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in r)
                        and r[0] < r[1]):
                    raise _err(w, f"bad range {r!r} (expected [lo, hi] with lo < hi)")
        else:
            raise _err(w, f"'kind' must be 'discrete' or 'continuous', got {kind!r}")
def _validate_model_sets(sets: Any, source: str) -> None:
    """``model_sets``: [{"name": str, "path": a folder inside the models folder}], distinct names."""
    if not isinstance(sets, list):
        raise _err(source, f"'model_sets' must be a list, got {sets!r}")
    names: set[str] = set()
    for i, spec in enumerate(sets):
        where = f"{source}, model_sets[{i}]"
        if not isinstance(spec, dict):
            raise _err(where, f"must be an object with 'name' and 'path', got {spec!r}")
        name = _need(spec, "name", str, where)
        path = _need(spec, "path", str, where)
        if not name or name in names:
            raise _err(where, f"'name' must be a distinct non-empty name, got {name!r}")
        names.add(name)
        parts = Path(path).parts
        if not path or Path(path).is_absolute() or ".." in parts or parts in ((), (".",)):
            raise _err(where, f"'path' must be a folder inside the models folder, got {path!r}")
        unknown = sorted(set(spec) - {"name", "path", "about"})
        if unknown:
            raise _err(where, f"unknown key(s) {', '.join(unknown)} (known: name, path, about)")
        if not isinstance(spec.get("about", ""), str):
            raise _err(where, f"'about' must be a string, got {spec['about']!r}")


# An implicit model's denoising-loss energy (σ bounds, levels, draws per level, noise seed) where its
# manifest entry leaves a setting out; ``inference_draws`` defaults to ``draws``.
DEFAULT_ENERGY = {"sigma_min": 0.02, "sigma_max": 2.0, "levels": 8, "draws": 2, "seed": 0}


def energy_settings(entry: dict) -> dict:
    """The entry's ``energy`` settings with the defaults filled in (``inference_draws`` included)."""
    en = {**DEFAULT_ENERGY, **entry.get("energy", {})}
    en.setdefault("inference_draws", en["draws"])
    return en


def _validate_energy(entry: dict, where: str) -> None:
    """``energy``: an implicit model's denoising-loss energy settings (levels, draws, seed, σ bounds;
    ``inference_draws``: draws per level when inference ranks discrete values); explicit models ignore it."""
    if not isinstance(entry.get("energy", {}), dict):
        raise _err(where, f"'energy' must be an object, got {entry['energy']!r}")
    en = energy_settings(entry)
    for key in ("levels", "draws", "inference_draws"):
        v = en[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise _err(where, f"energy.{key} must be an integer ≥ 1, got {v!r}")
    if isinstance(en["seed"], bool) or not isinstance(en["seed"], int) or en["seed"] < 0:
        raise _err(where, f"energy.seed must be an integer ≥ 0, got {en['seed']!r}")
    for key in ("sigma_min", "sigma_max"):
        v = en[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
            raise _err(where, f"energy.{key} must be a finite number > 0, got {v!r}")
    if en["sigma_min"] >= en["sigma_max"]:
        raise _err(where, f"energy.sigma_min must be below energy.sigma_max, got {en['sigma_min']!r}, {en['sigma_max']!r}")


def _validate_sigma_range(value: Any, kind: str, where: str) -> None:
    """``sigma_range``: [lo, hi] with 0 <= lo < hi (hi null: no upper bound), implicit models only."""
    if kind != "implicit":
        raise _err(where, f"'sigma_range' needs a noise-conditional implicit model, not kind {kind!r}")
    ok = isinstance(value, list) and len(value) == 2 and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)) for v in value)
    if ok:
        lo, hi = value
        ok = lo is not None and lo >= 0 and (hi is None or hi > lo)
    if not ok:
        raise _err(where, f"'sigma_range' must be [lo, hi] with 0 <= lo < hi (hi may be null), got {value!r}")


def _validate_guidance_interval(value: Any, kind: str, where: str) -> None:
    """``guidance_interval``: [lo, hi], 0 <= lo < hi, the noise levels sampling guides at (implicit models)."""
    if kind != "implicit":
        raise _err(where, f"'guidance_interval' needs an implicit (guided) model, not kind {kind!r}")
    ok = isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or not (0 <= value[0] < value[1]):
        raise _err(where, f"'guidance_interval' must be [lo, hi] with 0 <= lo < hi, got {value!r}")


def sigma_range_of(entry: dict) -> tuple[float, float] | None:
    """The entry's ``sigma_range`` as (lo, hi) with hi = inf for null; None when absent."""
    if "sigma_range" not in entry:
        return None
    lo, hi = entry["sigma_range"]
    return float(lo), (math.inf if hi is None else float(hi))


def _validate_concept_weights(weights: Any, families: dict, where: str) -> None:
    """``concept_weights``: {concept: w > 0}, a concept being a discrete value or a continuous family."""
    if not isinstance(weights, dict):
        raise _err(where, f"'concept_weights' must be an object, got {weights!r}")
    names = set()
    for fam, spec in families.items():
        names |= set(spec.get("values", [])) if spec.get("kind") == "discrete" else {fam}
    for concept, w in weights.items():
        if concept not in names:
            raise _err(where, f"concept_weights: {concept!r} is not a concept of this model (one of {', '.join(sorted(names))})")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w > 0 and math.isfinite(w)):
            raise _err(where, f"concept_weights[{concept!r}] must be a finite number > 0, got {w!r}")


def read_manifest(models_dir: str | os.PathLike) -> list[dict]:
    return _load_manifest(models_dir)["models"]


def _load_manifest(models_dir: str | os.PathLike) -> dict:
    """The parsed, validated manifest of ``models_dir``."""
    path = Path(models_dir) / MANIFEST
    if not path.is_file():
        raise ModelError(f"no model manifest at {path} (set --models DIR or CONCEPTLANG_MODELS to a folder with {MANIFEST})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    validate_manifest(data, str(path))
    return data


# --------------------------------------------------------------------------------------------
# Loading weights
# --------------------------------------------------------------------------------------------


def build_net(entry: dict) -> torch.nn.Module:
    from conceptlang.models.networks import NETWORKS

    arch = entry["architecture"]
    try:
        net_class, config_class = NETWORKS[arch["class"]]
        return net_class(config_class.from_json(arch["config"]))
    except (TypeError, KeyError, ValueError) as err:
        raise ModelError(f"model {entry['name']!r}: bad architecture config ({err})") from None


def weights_path(entry: dict, models_dir: str | os.PathLike) -> Path:
    """The entry's weights file, refused (ModelError) when it resolves outside the models folder:
    a symbolic link (of the file or of a folder on its way) may not lead out of it."""
    path = Path(models_dir) / entry["file"]
    root = Path(models_dir).resolve()
    real = path.resolve()
    if not real.is_relative_to(root):
        raise ModelError(f"model {entry['name']!r}: weights file {path} resolves to {real}, outside the models "
                         f"folder {root} (a symbolic link may not lead out of it)")
    return path


def verify_weights(entry: dict, models_dir: str | os.PathLike) -> str:
    """``"ok"``, ``"missing"`` or ``"mismatch"``: whether the entry's weights file exists and has the
    manifest's sha256 (ModelError when its path leads outside the models folder)."""
    path = weights_path(entry, models_dir)
    if not path.is_file():
        return "missing"
    return "ok" if sha256_file(path) == entry["sha256"] else "mismatch"


def load_weights(entry: dict, models_dir: Path, device: torch.device) -> torch.nn.Module:
    """Build the network, verify the file's sha256, load the (fp16) weights as fp32 on ``device``.

    Every tensor must be finite: a NaN or infinity is refused here, naming the tensor, rather than
    surfacing later as a sampler's non-finite step."""
    from safetensors.torch import load_file

    path = weights_path(entry, models_dir)
    if not path.is_file():
        raise ModelError(f"model {entry['name']!r}: weights file {path} is missing")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ModelError(
            f"model {entry['name']!r}: checksum mismatch for {path} (manifest {entry['sha256'][:12]}…, file {digest[:12]}…); "
            "the file is corrupt or was replaced"
        )
    net = build_net(entry)
    try:
        state = load_file(str(path))
    except Exception as err:
        raise ModelError(f"model {entry['name']!r}: cannot read {path}: {err}") from None
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ModelError(f"model {entry['name']!r}: weights do not fit the architecture (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ModelError(f"model {entry['name']!r}: {k} has shape {tuple(v.shape)}, architecture expects {tuple(own[k].shape)}")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise ModelError(f"model {entry['name']!r}: weights tensor {k} in {path} holds {bad} non-finite "
                             "value(s) (NaN or infinity); the file is not a usable model")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.to(device).eval().requires_grad_(False)


class RegisteredModel:
    """A :class:`ConceptModel` handle; the network for a device is loaded on first use and cached."""

    def __init__(self, entry: dict, registry: "ModelRegistry"):
        from conceptlang.models.networks import SlotSpec

        self.entry = entry
        self.name: str = entry["name"]
        self.domain: str = entry["domain"]
        self.kind: str = entry["kind"]
        cfg = entry["architecture"]["config"]
        self.noise_conditional: bool = self.kind == "implicit" or bool(cfg.get("noise_conditional", False))
        self.image_shape = (int(cfg.get("channels", 3)), int(cfg["image_size"]), int(cfg["image_size"]))
        self.slots = tuple(SlotSpec.from_json(s) for s in cfg.get("slots", ()))
        # (lo, hi) noise levels its conditions act at, hi = inf when unbounded; None: every level
        self.sigma_range: tuple[float, float] | None = sigma_range_of(entry)
        self._registry = registry
        self._device = torch.device("cpu")

    def impl(self, device: torch.device | str | None = None):
        """The loaded Implicit/ExplicitConceptModel on ``device`` (default: the handle's device)."""
        return self._registry._loaded(self.entry, torch.device(device) if device is not None else self._device)

    def to(self, device: torch.device | str) -> "RegisteredModel":
        self._device = torch.device(device)
        return self

    def encode(self, conditions: Sequence[Condition]) -> torch.Tensor:
        from conceptlang.models.conditions import encode_conditions

        return encode_conditions(self.slots, conditions)

    def energy(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return self.impl(x.device).energy(x, cond.to(x.device), sigma)

    def score(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return self.impl(x.device).score(x, cond.to(x.device), sigma)

    @property
    def forward_rows(self) -> int:
        """Rows this model's networks have evaluated, over every device it was loaded on."""
        with self._registry._lock:
            loaded = [m for (name, _), m in self._registry._cache.items() if name == self.name]
        return sum(m.forward_rows for m in loaded)

    @property
    def fallback(self) -> "RegisteredModel | None":
        """The domain prior's handle when this model speaks only in a sigma range, else None."""
        return self._registry._priors.get(self.domain) if self.sigma_range is not None else None

    @property
    def has_energy_levels(self) -> bool:
        return self.kind == "implicit"

    def energy_levels(self, x: torch.Tensor, cond: torch.Tensor, draws: int | None = None) -> torch.Tensor:
        """Per-noise-level energies (N, S) of an implicit model (see ImplicitConceptModel.energy_levels)."""
        return self.impl(x.device).energy_levels(x, cond.to(x.device), draws)

    @property
    def inference_draws(self) -> int | None:
        """Noise draws per level when concept inference ranks a discrete family (manifest
        ``energy.inference_draws``; default the energy's own ``draws``); None for explicit models."""
        if self.kind != "implicit":
            return None
        return energy_settings(self.entry)["inference_draws"]

    def readout(self, family: str) -> dict | None:
        """The calibrated inference readout of ``family`` from the manifest (``inference.readout``), if any."""
        return (self.entry.get("inference") or {}).get("readout", {}).get(family)

    def __repr__(self) -> str:
        return f"RegisteredModel({self.name!r}, {self.kind}, domain={self.domain!r})"


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------


class ModelRegistry:
    """Implements :class:`conceptlang.interface.ConceptRegistry` over a models folder."""

    def __init__(self, models_dir: str | os.PathLike):
        self.models_dir = Path(models_dir)
        manifest = _load_manifest(self.models_dir)
        self.entries: list[dict] = manifest["models"]
        self.set_specs: list[dict] = list(manifest.get("model_sets", []))
        self._sets: list | None = None
        self.handles = {e["name"]: RegisteredModel(e, self) for e in self.entries}
        self._by_family: dict[tuple[str, str], RegisteredModel] = {}
        self._priors: dict[str, RegisteredModel] = {}
        for e in self.entries:
            for fam in e["families"]:
                self._by_family[(e["domain"], fam)] = self.handles[e["name"]]
            if e.get("prior", e["layout"] == "joint"):
                self._priors[e["domain"]] = self.handles[e["name"]]
        self._domains = {d: self._build_domain(d) for d in self._priors}
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.RLock()  # re-entered when a model loads its fallback prior

    # -- loading --
    def _loaded(self, entry: dict, device: torch.device):
        from conceptlang.models.concept_model import ExplicitConceptModel, ImplicitConceptModel

        key = (entry["name"], str(device))
        with self._lock:
            model = self._cache.get(key)
            if model is None:
                net = load_weights(entry, self.models_dir, device)
                if entry["kind"] == "implicit":
                    en = energy_settings(entry)
                    model = ImplicitConceptModel(
                        net, entry["name"], entry["domain"],
                        energy_sigmas=(float(en["sigma_min"]), float(en["sigma_max"]), en["levels"]),
                        energy_draws=en["draws"], energy_seed=en["seed"],
                        guidance=float(entry.get("guidance", 1.0)),
                        guidance_interval=(tuple(entry["guidance_interval"]) if "guidance_interval" in entry else None),
                    )
                    rng = self.handles[entry["name"]].sigma_range
                    if rng is not None:  # outside its noise levels the model scores as the domain prior
                        model.set_sigma_range(*rng, fallback=self._loaded(self._priors[entry["domain"]].entry, device))
                else:
                    model = ExplicitConceptModel(net, entry["name"], entry["domain"])
                self._cache[key] = model
        return model

    def _build_domain(self, name: str) -> Domain:
        from conceptlang.data import DOMAIN_NAMES, get_domain

        first = self._priors[name].image_shape
        if name in DOMAIN_NAMES:
            # a built-in domain's families; the image size is the models' (a 64 px faces run is faces)
            dom = get_domain(name)
            return dom if (dom.channels, dom.image_size) == first[:2] else dataclasses.replace(dom, channels=first[0], image_size=first[1])
        fams = []
        for e in self.entries:
            if e["domain"] != name:
                continue
            for fam, spec in e["families"].items():
                if spec["kind"] == "discrete":
                    fams.append(Family(fam, "discrete", values=tuple(spec["values"]), exclusive=bool(spec.get("exclusive", True))))
                else:
                    fams.append(Family(fam, "continuous", params=tuple(spec["params"]), ranges=tuple(tuple(r) for r in spec["ranges"])))
        return Domain(name=name, image_size=first[1], channels=first[0], families=tuple(fams))

    # -- ConceptRegistry --
    def domains(self) -> list[str]:
        return sorted(self._domains)

    def domain(self, name: str) -> Domain:
        if name not in self._domains:
            close = difflib.get_close_matches(name, list(self._domains))
            hint = f"; did you mean {close[0]!r}?" if close else f" (domains: {', '.join(self.domains())})"
            raise ModelError(f"no models for domain {name!r} in {self.models_dir}{hint}")
        return self._domains[name]

    def _served(self, domain: str) -> list[Family]:
        return [f for f in self._domains[domain].families if (domain, f.name) in self._by_family]

    def candidates(self, name: str, family: str | None = None) -> list[ConceptRef]:
        out = []
        for d in self.domains():
            for fam in self._served(d):
                if family is not None and fam.name != family:
                    continue
                if fam.kind == "continuous":
                    if name == fam.name and family is None:
                        out.append(ConceptRef(d, fam.name))
                elif name in fam.values:
                    out.append(ConceptRef(d, fam.name, value=name))
        return out

    def known_names(self) -> list[str]:
        names: list[str] = []
        for d in self.domains():
            for fam in self._served(d):
                if fam.kind == "continuous":
                    names.append(fam.name)
                else:
                    for v in fam.values:
                        names += [v, f"{fam.name}.{v}"]
        return sorted(set(names))

    def model_for(self, ref: ConceptRef) -> tuple[ConceptModel, Condition]:
        model = self._by_family.get((ref.domain, ref.family))
        if model is None:
            raise ModelError(f"no model serves {ref.domain}/{ref.family} in {self.models_dir}")
        if ref.params is not None:
            return model, {ref.family: tuple(float(p) for p in ref.params)}
        if ref.absent:
            from conceptlang.models.conditions import ABSENT

            return model, {ref.family: ABSENT}
        if ref.value is None:
            raise ModelError(f"{ref.domain}/{ref.family} needs a value or parameters")
        return model, {ref.family: ref.value}

    def joint(self, refs: Sequence[ConceptRef]) -> tuple[ConceptModel, Condition] | None:
        """A joint model conditioned on every one of ``refs`` at once, or None.

        Only a ``layout: joint`` model serving all of them, with one value per family, qualifies: it
        was trained on random subsets of its families' labels (per-family condition dropout), so a
        multi-family condition is its own estimate of p(x | c₁, …, c_k), not an extrapolation.
        """
        if len(refs) < 2:
            return None
        pairs = [self.model_for(r) for r in refs]
        model = pairs[0][0]
        if any(m is not model for m, _ in pairs) or getattr(model, "entry", {}).get("layout") != "joint":
            return None
        cond: dict = {}
        for _, c in pairs:
            if set(c) & set(cond):
                return None
            cond.update(c)
        return model, cond

    def absent(self, ref: ConceptRef) -> ConceptRef | None:
        """The known-absent value of the yes/no attribute ``ref`` when its model has a ``<none>``
        token for it (it was trained on "known not to hold"), else None. Used by the compiler's
        ``negation="complement"``: ``~smiling`` becomes the condition smiling=<none>."""
        from conceptlang.models.conditions import NONE_TOKEN

        model = self._by_family.get((ref.domain, ref.family))
        if model is None or ref.value is None or ref.absent:
            return None
        if not any(s.family == ref.family and NONE_TOKEN in s.values for s in model.slots):
            return None
        return ConceptRef(ref.domain, ref.family, value=ref.value, absent=True)

    # Label draws from the domain's generator that value_shares counts (train split, fixed seed),
    # and the fewest matching rows for a conditional share (else the marginal one).
    SHARE_DRAWS = 60_000
    SHARE_MIN_ROWS = 500

    def value_shares(self, domain: str, families: Sequence[str],
                     given: Sequence[ConceptRef]) -> dict[tuple[str, ...], float] | None:
        """The training data's share of each combination of values of ``families`` among the
        examples where every discrete concept of ``given`` holds (known-absent ones: does not hold);
        a combination names None for a family none of whose values holds (an absent attribute).

        Counted on label draws from the domain's procedural generator, its whole one-object
        distribution (``label_arrays(..., split="domain")``: for scenes every shape × colour × size
        triple equally likely, the four held out of training included, so ``circle`` also draws
        large blue circles; the distribution metrics compare against the same reference); when
        fewer than SHARE_MIN_ROWS draws match, the marginal shares. None for a domain without a generator (own data): the compiler then
        gives equal shares."""
        from conceptlang.data import DOMAIN_NAMES, label_arrays

        if domain not in DOMAIN_NAMES:
            return None
        key = ("labels", domain)
        with self._lock:
            arrays = self._cache.get(key)
            if arrays is None:
                arrays = label_arrays(domain, self.SHARE_DRAWS, seed=0, split="domain")
                self._cache[key] = arrays
        dom = self._domains[domain]
        idx = {f: np.asarray(v)[:, 0] for f, v in arrays.index.items()}
        try:
            cols = [(idx[f], dom.family(f).values) for f in families]
        except (KeyError, DataError):
            return None
        mask = np.ones(len(cols[0][0]) if cols else 0, dtype=bool)
        for r in given:
            if r.params is not None or r.family not in idx:
                continue
            if r.absent:
                mask &= idx[r.family] < 0
            else:
                values = dom.family(r.family).values
                if r.value not in values:
                    continue
                mask &= idx[r.family] == values.index(r.value)
        if int(mask.sum()) < self.SHARE_MIN_ROWS:
            mask = np.ones_like(mask)
        counts: dict[tuple[str, ...], int] = {}
        rows = np.stack([c for c, _ in cols], axis=1)[mask]
        combos, n = np.unique(rows, axis=0, return_counts=True)
        for combo, k in zip(combos, n):
            # −1: no value of the family holds (a yes/no attribute known absent) → None
            counts[tuple(vals[i] if i >= 0 else None for i, (_, vals) in zip(combo, cols))] = int(k)
        total = sum(counts.values())
        return {c: k / total for c, k in counts.items()} if total else None

    def max_objects(self, ref: ConceptRef) -> int:
        """How many objects per image the training of the model serving ``ref`` covers (manifest
        ``max_objects``, default 1): how many values of a continuous family it composes."""
        model = self._by_family.get((ref.domain, ref.family))
        return int(getattr(model, "entry", {}).get("max_objects", 1)) if model is not None else 1

    def model_sets(self) -> list:
        """Other model sets the compiler may turn to (:func:`conceptlang.models.sets.model_sets_of`)."""
        if self._sets is None:
            from conceptlang.models.sets import model_sets_of

            self._sets = model_sets_of(self)
        return self._sets

    def concept_weight(self, ref: ConceptRef) -> float:
        """The calibrated weight of ``ref`` (its model entry's ``concept_weights``; 1 when absent).

        A concept whose learned energy is too flat (its guided samples miss it) is sharpened
        relative to the prior: the compiler scores it as E_prior + w·(E_c − E_prior) wherever it
        appears (CompileOptions.concept_weights; docs/models.md, "Calibrated concept weights").
        """
        model = self._by_family.get((ref.domain, ref.family))
        if ref.absent:  # the weights were calibrated for the concepts as named, not their absence
            return 1.0
        weights = getattr(model, "entry", {}).get("concept_weights", {}) if model is not None else {}
        return float(weights.get(ref.value if ref.params is None else ref.family, 1.0))

    def prior(self, domain: str) -> tuple[ConceptModel, Condition]:
        self.domain(domain)
        return self._priors[domain], {}

    def sampler_settings(self, models: Sequence[ConceptModel]) -> dict:
        """The tuned settings of the model with the smallest step size (the most conservative)."""
        best: dict | None = None
        for m in models:
            entry = getattr(m, "entry", None)
            s = dict(entry.get("sampler", {})) if entry else {}
            if s and (best is None or float(s.get("step_size", float("inf"))) < float(best.get("step_size", float("inf")))):
                best = s
        return dict(best or {})

    # -- listing --
    def describe(self) -> list[dict]:
        out = []
        for e in self.entries:
            path = self.models_dir / e["file"]
            out.append({
                "name": e["name"], "domain": e["domain"], "kind": e["kind"], "layout": e["layout"],
                "families": {f: (s.get("values") or s.get("params")) for f, s in e["families"].items()},
                "prior": bool(e.get("prior", e["layout"] == "joint")),
                "file": e["file"], "sha256": e["sha256"],
                "bytes": path.stat().st_size if path.exists() else None,
                "sampler": e.get("sampler", {}), "metrics": e.get("metrics", {}),
                "concept_weights": dict(e.get("concept_weights", {})),
                "max_objects": int(e.get("max_objects", 1)),
                "sigma_range": list(e["sigma_range"]) if "sigma_range" in e else None,
                "guidance": e.get("guidance", 1.0),
                "guidance_interval": list(e["guidance_interval"]) if "guidance_interval" in e else None,
                "training": {k: e.get("training", {}).get(k) for k in ("method", "iterations", "seconds", "split", "warm_start")
                             if k in e.get("training", {})},
            })
        return out


def default_models_dir() -> Path:
    from conceptlang.resources import shipped_models_dir

    env = os.environ.get("CONCEPTLANG_MODELS")
    return Path(env) if env else shipped_models_dir()


def load_registry(models_dir: str | os.PathLike | None = None) -> ModelRegistry:
    """The registry for ``models_dir`` (None → $CONCEPTLANG_MODELS, else the shipped models)."""
    return ModelRegistry(models_dir if models_dir is not None else default_models_dir())
