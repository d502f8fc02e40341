"""The manifests: the models manifest (``models/manifest.json``) and the judges manifest
(``models/judges/manifest.json``): their formats, reading, validation and writing.

Every reader and writer of a manifest goes through here: the registry reads the models manifest
(:func:`read_manifest`), export and calibration change it (:func:`update_manifest`, which
validates the whole manifest before it atomically replaces the file); the judges are loaded from
:func:`load_judges_manifest` and judge training and measurement change it through
:func:`update_judges_manifest`; :func:`verified_file` checks a file against its entry's sha256.

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
no families is the prior). An implicit entry with no families, not the prior, and a
``finish_below`` noise level is its domain's finishing model: below that level its unconditional
score alone denoises every sample of the domain (docs/design.md, "Finishing model").

Optional: an entry's ``max_objects`` (integer ≥ 1, default 1) is how many objects per image the
model's training covers (the data of its final runs); the manifest's ``model_sets`` lists other model folders, each ``{"name": ...,
"path": "<folder inside this one>"}``, that the compiler may use for an expression the models
here were not trained for (docs/compiler.md, "Model sets"; :mod:`conceptlang.models.sets`).

Judges manifest format (``format_version`` 1), one entry per domain, keyed by the domain::

    {"format_version": 1,
     "judges": {"scenes": {"domain": "scenes", "file": "scenes.safetensors", "sha256": "...",
                           "architecture": {"class": "SceneObjectNet", "kwargs": {"width": 32}, ...},
                           "training": {...}, "metrics": {...}}}}

An entry with ``"kind": "labelled"`` is the judge of a labelled image folder
(:mod:`conceptlang.judge.labelled`) and also has ``families`` ([{"name", "values", "none"}]) and
``thresholds`` ({"confidence", "distance"}).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from conceptlang.errors import ModelError
from conceptlang.io import sha256_file, write_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("implicit", "explicit")
LAYOUTS = ("joint", "per-family")
ARCHITECTURES = ("UNet", "PixelNet", "EnergyNet")
IMPLICIT_ARCHITECTURES = ("UNet", "PixelNet")
_SHA = re.compile(r"^[0-9a-f]{64}$")


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
        if not params:
            raise _err(w, "'params' must be non-empty")
        _validate_ranges(ranges, params, w)
    else:
        raise _err(w, f"'kind' must be 'discrete' or 'continuous', got {kind!r}")


def _check_header(data: Any, source: str) -> None:
    """A manifest (models or judges) is a JSON object of this reader's format_version."""
    if not isinstance(data, dict):
        raise _err(source, f"must be a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise _err(source, f"format_version is {version!r}; this ConceptLang reads format_version {FORMAT_VERSION}")


def validate_manifest(data: Any, source: str = MANIFEST) -> list[dict]:
    """Check a parsed manifest; return its model entries. Raises ModelError naming the problem."""
    _check_header(data, source)
    models = _need(data, "models", list, source)
    names: set[str] = set()
    covered: dict[tuple[str, str], str] = {}
    priors: dict[str, str] = {}
    finishers: dict[str, str] = {}
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
        _file_and_checksum(entry, "models folder", where)
        for key in ("guidance", "sampling_guidance"):
            if not is_positive_number(entry.get(key, 1.0)):
                raise _err(where, f"{key!r} must be a number > 0, got {entry[key]!r}")
        if "sampling_guidance" in entry and kind != "implicit":
            raise _err(where, "'sampling_guidance' applies to implicit models only")
        if "guidance_interval" in entry:
            _validate_guidance_interval(entry["guidance_interval"], kind, where)
        if "prior_below" in entry:
            _validate_prior_below(entry["prior_below"], kind, where)
        if "prior_keeps" in entry:
            _validate_prior_keeps(entry, families, where)
        if "finish_below" in entry:
            _validate_finish_below(entry, kind, families, layout, where)
            if domain in finishers:
                raise _err(where, f"domain {domain!r} already has a finishing model ({finishers[domain]!r})")
            finishers[domain] = name
        if "autoguide" in entry:
            _validate_autoguide(entry["autoguide"], entry, kind, arch, where)
        if "mirror" in entry:
            _validate_mirror(entry["mirror"], kind, families, where)
        sampler = entry.get("sampler", {})
        if not isinstance(sampler, dict):
            raise _err(where, f"'sampler' must be an object, got {sampler!r}")
        max_objects = entry.get("max_objects", 1)
        if isinstance(max_objects, bool) or not isinstance(max_objects, int) or max_objects < 1:
            raise _err(where, f"'max_objects' must be an integer ≥ 1 (how many objects per image its training covers), "
                              f"got {max_objects!r}")
        _validate_concept_weights(entry.get("concept_weights", {}), families, where)
        if "concept_weights_above" in entry:
            level = entry["concept_weights_above"]
            if "concept_weights" not in entry:
                raise _err(where, "'concept_weights_above' needs 'concept_weights' (the weights it limits)")
            if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level) or level < 0:
                raise _err(where, f"'concept_weights_above' must be a noise level >= 0, got {level!r}")
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
_CONFIG_INT_MAX = {"image_size": 1024, "channels": 64, "blocks_per_level": 16, "emb_dim": 8192, "groups": 1024,
                   "refine_blocks": 16}
_CONFIG_INT_MIN = {"refine_blocks": 0}
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
            lo, hi = _CONFIG_INT_MIN.get(key, 1), _CONFIG_INT_MAX.get(key, 1 << 20)
            if not is_int(value) or not lo <= value <= hi:
                raise bad(key, f"an integer in [{lo}, {hi}]")
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


def _objects(value: Any, key: str, where: str, what: str = "an object", place: str | None = None):
    """(place, item) for each item of the list ``value`` (the manifest's ``key`` at ``where``;
    items are named ``{place}[i]``, by default ``{where}, {key}[i]``); ModelError when ``value`` is
    no list or an item is not ``what`` (a JSON object)."""
    if not isinstance(value, list):
        raise _err(where, f"{key!r} must be a list, got {value!r}")
    for i, item in enumerate(value):
        w = f"{place or f'{where}, {key}'}[{i}]"
        if not isinstance(item, dict):
            raise _err(w, f"must be {what}, got {item!r}")
        yield w, item


def _known_keys(spec: dict, known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise _err(where, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")


def _distinct_name(spec: dict, key: str, seen: set[str], where: str) -> str:
    """``spec[key]``: a non-empty string not in ``seen`` (added to it)."""
    name = _need(spec, key, str, where)
    if not name or name in seen:
        raise _err(where, f"{key!r} must be a distinct non-empty name, got {name!r}")
    seen.add(name)
    return name


def _is_range(r: Any) -> bool:
    """[lo, hi]: two finite numbers, lo < hi."""
    return (isinstance(r, list) and len(r) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in r)
            and r[0] < r[1])


def _validate_ranges(ranges: list, params: list, where: str) -> None:
    """One [lo, hi] (finite, lo < hi) per parameter."""
    if len(ranges) != len(params):
        raise _err(where, "'ranges' must give one [lo, hi] per parameter")
    for r in ranges:
        if not _is_range(r):
            raise _err(where, f"bad range {r!r} (expected [lo, hi] with lo < hi)")


def _validate_slots(slots: Any, where: str) -> None:
    """``slots``: the condition slots of a network (see networks.SlotSpec)."""
    seen: set[str] = set()
    for w, s in _objects(slots, "slots", where, place=f"{where}.slots"):
        _known_keys(s, ("family", "kind", "values", "params", "ranges"), w)
        _distinct_name(s, "family", seen, w)
        kind = _need(s, "kind", str, w)
        values, params, ranges = s.get("values", []), s.get("params", []), s.get("ranges", [])
        if not all(isinstance(x, list) for x in (values, params, ranges)):
            raise _err(w, "'values', 'params' and 'ranges' must be lists")
        if kind == "discrete":
            if not values or not all(isinstance(v, str) for v in values):
                raise _err(w, f"a discrete slot needs a non-empty list of value names, got {values!r}")
        elif kind == "continuous":
            if not params or not all(isinstance(p, str) for p in params):
                raise _err(w, f"a continuous slot needs a non-empty list of parameter names, got {params!r}")
            if ranges:
                _validate_ranges(ranges, params, w)
        else:
            raise _err(w, f"'kind' must be 'discrete' or 'continuous', got {kind!r}")


def _validate_model_sets(sets: Any, source: str) -> None:
    """``model_sets``: [{"name": str, "path": a folder inside the models folder}], distinct names."""
    names: set[str] = set()
    for where, spec in _objects(sets, "model_sets", source, "an object with 'name' and 'path'"):
        _known_keys(spec, ("name", "path", "about"), where)
        _distinct_name(spec, "name", names, where)
        path = _need(spec, "path", str, where)
        parts = Path(path).parts
        if not path or Path(path).is_absolute() or ".." in parts or parts in ((), (".",)):
            raise _err(where, f"'path' must be a folder inside the models folder, got {path!r}")
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


def _validate_prior_below(value: Any, kind: str, where: str) -> None:
    """``prior_below``: a noise level >= 0 below which sampling scores every condition as the model's prior."""
    if kind != "implicit":
        raise _err(where, f"'prior_below' needs a noise-conditional implicit model, not kind {kind!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _err(where, f"'prior_below' must be a noise level >= 0, got {value!r}")


def _validate_finish_below(entry: dict, kind: str, families: dict, layout: str, where: str) -> None:
    """``finish_below``: the noise level below which this model's unconditional score alone denoises
    every sample of its domain. The entry serves no family and is not the domain's prior."""
    value = entry["finish_below"]
    if kind != "implicit":
        raise _err(where, f"'finish_below' needs a noise-conditional implicit model, not kind {kind!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise _err(where, f"'finish_below' must be a noise level > 0, got {value!r}")
    if families:
        raise _err(where, f"a finishing model ('finish_below') serves no family, got {', '.join(families)}")
    if entry.get("prior", layout == "joint"):
        raise _err(where, "a finishing model ('finish_below') is not the domain's prior: the prior acts at every level")


def _validate_mirror(value: Any, kind: str, families: dict, where: str) -> None:
    """``mirror``: {"below": σ >= 0, "reflect": ["family.param", ...]}, the entry's statement that
    its data is left-right symmetric with those parameters reflected within their ranges."""
    if kind != "implicit":
        raise _err(where, f"'mirror' needs a noise-conditional implicit model, not kind {kind!r}")
    if not isinstance(value, dict) or set(value) - {"below", "reflect", "turns"} or "below" not in value:
        raise _err(where, f"'mirror' must be {{\"below\": sigma, \"reflect\": [\"family.param\", ...]}}, optionally with "
                   f"\"turns\", got {value!r}")
    below = value["below"]
    if isinstance(below, bool) or not isinstance(below, (int, float)) or not math.isfinite(below) or below < 0:
        raise _err(where, f"'mirror.below' must be a noise level >= 0, got {below!r}")
    reflect = value.get("reflect", [])
    if not isinstance(reflect, list) or not all(isinstance(r, str) for r in reflect):
        raise _err(where, f"'mirror.reflect' must be a list of \"family.param\" names, got {reflect!r}")
    for name in reflect:
        if _param_range(name, families) is None:
            raise _err(where, f"'mirror.reflect': {name!r} is not a parameter of a continuous family of the model")
    if "turns" in value:
        _validate_turns(value["turns"], families, where)


def _param_range(name: Any, families: dict) -> tuple[str, Any] | None:
    """("family", range) of a "family.param" name of a continuous family in ``families``; None if it is not one."""
    if not isinstance(name, str):
        return None
    fam, _, param = name.partition(".")
    spec = families.get(fam)
    if not isinstance(spec, dict) or spec.get("kind") != "continuous" or param not in spec.get("params", []):
        return None
    ranges = spec.get("ranges") or []
    i = spec["params"].index(param)
    return fam, (list(ranges[i]) if i < len(ranges) else None)


def _validate_turns(value: Any, families: dict, where: str) -> None:
    """``mirror.turns``: {"when": {family: [values]}, "reflect": ["family.param", ...], "swap": [p, q]}, the
    statement that rows holding those values are symmetric under the up-down flip (reflecting ``reflect``)
    and the transpose (exchanging p and q, two parameters of one family with one range)."""
    shape = '{"when": {"family": ["value", ...]}, "reflect": ["family.param", ...], "swap": ["family.p", "family.q"]}'
    if not isinstance(value, dict) or set(value) - {"when", "reflect", "swap"} or not {"when", "swap"} <= set(value):
        raise _err(where, f"'mirror.turns' must be {shape}, got {value!r}")
    when = value["when"]
    if not isinstance(when, dict) or not when:
        raise _err(where, f"'mirror.turns.when' must map discrete families to lists of their values, got {when!r}")
    for fam, values in when.items():
        spec = families.get(fam)
        known = spec.get("values", []) if isinstance(spec, dict) and spec.get("kind") == "discrete" else None
        if known is None or not isinstance(values, list) or not values or any(v not in known for v in values):
            raise _err(where, f"'mirror.turns.when': {fam!r}: {values!r} does not name values of a discrete family "
                       "of the model")
    reflect = value.get("reflect", [])
    if not isinstance(reflect, list) or any(_param_range(r, families) is None for r in reflect):
        raise _err(where, f"'mirror.turns.reflect' must list parameters of continuous families, got {reflect!r}")
    swap = value["swap"]
    pair = [_param_range(p, families) for p in swap] if isinstance(swap, list) and len(swap) == 2 else None
    if pair is None or None in pair or swap[0] == swap[1] or pair[0] != pair[1]:
        raise _err(where, f"'mirror.turns.swap' must name two parameters of one continuous family with the same "
                   f"range, got {swap!r}")


def turns_description(value: Any) -> tuple | None:
    """A validated ``mirror.turns`` as GuidanceSettings (and the model) holds it: ((family, values), ...), reflected, swapped."""
    if value is None:
        return None
    return (tuple((f, tuple(v)) for f, v in value["when"].items()), tuple(value.get("reflect", ())),
            tuple(value["swap"]))


def _validate_prior_keeps(entry: dict, families: dict, where: str) -> None:
    """``prior_keeps``: distinct family names of the entry, whose conditions stay below ``prior_below``."""
    value = entry["prior_keeps"]
    if "prior_below" not in entry:
        raise _err(where, "'prior_keeps' needs 'prior_below' (the noise level below which it applies)")
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value) or len(set(value)) != len(value) \
            or any(f not in families for f in value):
        raise _err(where, f"'prior_keeps' must be a list of distinct families of the model "
                          f"({', '.join(families)}), got {value!r}")


def _validate_guidance_interval(value: Any, kind: str, where: str) -> None:
    """``guidance_interval``: [lo, hi], 0 <= lo < hi, the noise levels sampling guides at (implicit models)."""
    if kind != "implicit":
        raise _err(where, f"'guidance_interval' needs an implicit (guided) model, not kind {kind!r}")
    if not is_interval(value):
        raise _err(where, f"'guidance_interval' must be [lo, hi] with 0 <= lo < hi, got {value!r}")


def is_interval(value: Any) -> bool:
    """Whether ``value`` is [lo, hi], two finite numbers with 0 <= lo < hi."""
    ok = isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    return ok and 0 <= value[0] < value[1]


def is_positive_number(value: Any) -> bool:
    """Whether ``value`` is a finite number > 0 (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value < math.inf


# What a guide network must share with the model it guides: it is evaluated on the same images and conditions.
GUIDE_MATCH_KEYS = ("image_size", "channels", "slots")


def guide_mismatch(guide_config: dict, model_config: dict) -> str | None:
    """The first architecture.config key of :data:`GUIDE_MATCH_KEYS` where a guide differs from its model, or None."""
    return next((k for k in GUIDE_MATCH_KEYS if guide_config.get(k) != model_config.get(k)), None)


def _validate_autoguide(spec: Any, entry: dict, kind: str, arch: dict, where: str) -> None:
    """``autoguide``: {file, sha256, architecture, weight[, interval, training]}: a smaller network of
    the same conditions (same slots, image size and channels) that guides the model's sampling."""
    w = f"{where}, autoguide"
    if kind != "implicit":
        raise _err(where, f"'autoguide' needs an implicit (noise-predicting) model, not kind {kind!r}")
    if not isinstance(spec, dict):
        raise _err(w, f"must be an object, got {spec!r}")
    _file_and_checksum(spec, "models folder", w)
    if spec["file"] == entry.get("file"):
        raise _err(w, "'file' must be the guide's own weights file, not the model's")
    garch = _need(spec, "architecture", dict, w)
    if garch.get("class") not in IMPLICIT_ARCHITECTURES:
        raise _err(w, f"architecture.class must be one of {', '.join(sorted(IMPLICIT_ARCHITECTURES))}, got {garch.get('class')!r}")
    config = _need(garch, "config", dict, f"{w}, architecture")
    _validate_architecture_config(garch["class"], config, w)
    key = guide_mismatch(config, arch["config"])
    if key is not None:
        raise _err(w, f"the guide's architecture.config {key!r} must equal the model's (the guide is evaluated on the "
                      "same images and conditions)")
    if not is_positive_number(spec.get("weight")):
        raise _err(w, f"'weight' must be a number > 0, got {spec.get('weight')!r}")
    if "interval" in spec and not is_interval(spec["interval"]):
        raise _err(w, f"'interval' must be [lo, hi] with 0 <= lo < hi, got {spec['interval']!r}")
    if not isinstance(spec.get("training", {}), dict):
        raise _err(w, f"'training' must be an object, got {spec['training']!r}")


# The keys of an entry that say how sampling guides the model (``guidance`` itself is also the
# energies' weight): export keeps them when it rewrites an entry, as it keeps ``sampler``.
SAMPLING_GUIDANCE_KEYS = ("sampling_guidance", "guidance_interval", "prior_below", "prior_keeps", "autoguide", "mirror")


@dataclass(frozen=True)
class GuidanceSettings:
    """How an implicit model is guided, as its manifest entry states it (:meth:`of_entry`) or as a
    loaded model holds it (``ImplicitConceptModel.guidance_settings``); the one reading of those keys.

    ``guidance`` is the weight of the energies (concept inference) and, unless ``sampling_guidance``
    is set, of sampling; ``interval`` the noise levels sampling guides at (None: every level);
    ``prior_below`` the level below which sampling follows the model's prior, or with ``prior_keeps``
    the conditions of those families alone; ``autoguide_weight``
    and ``autoguide_interval`` those of a guide network (weight None: no guide)."""

    guidance: float = 1.0
    sampling_guidance: float | None = None
    interval: tuple[float, float] | None = None
    prior_below: float | None = None
    prior_keeps: tuple[str, ...] = ()
    autoguide_weight: float | None = None
    autoguide_interval: tuple[float, float] | None = None
    mirror_below: float | None = None
    mirror_reflect: tuple[str, ...] = ()
    mirror_turns: tuple | None = None  # ((family, values), ...), reflected, swapped: the mirror's quarter turns

    @classmethod
    def of_entry(cls, entry: Mapping[str, Any]) -> "GuidanceSettings":
        auto = entry.get("autoguide")
        return cls(
            guidance=float(entry.get("guidance", 1.0)),
            sampling_guidance=_float_or_none(entry.get("sampling_guidance")),
            interval=_pair_or_none(entry.get("guidance_interval")),
            prior_below=_float_or_none(entry.get("prior_below")),
            prior_keeps=tuple(entry.get("prior_keeps", ())),
            autoguide_weight=None if auto is None else float(auto["weight"]),
            autoguide_interval=None if auto is None else _pair_or_none(auto.get("interval")),
            mirror_below=None if "mirror" not in entry else float(entry["mirror"]["below"]),
            mirror_reflect=tuple(entry.get("mirror", {}).get("reflect", ())),
            mirror_turns=turns_description(entry.get("mirror", {}).get("turns")),
        )

    @property
    def sampling_weight(self) -> float:
        """The weight sampling applies: ``sampling_guidance``, by default ``guidance``."""
        return self.guidance if self.sampling_guidance is None else self.sampling_guidance

    @property
    def guided(self) -> bool:
        """Whether sampling differs from the plain conditional anywhere."""
        return not (self.guidance == 1.0 and self.sampling_weight == 1.0 and self.autoguide_weight is None
                    and self.prior_below is None and self.mirror_below is None)

    def describe(self) -> str:
        """One line: the sampling weight and where it acts, the autoguide, the prior's last levels and,
        where it differs, the energies' weight (``conceptlang explain``)."""
        text = f"w = {self.sampling_weight:g}"
        if self.interval is not None:
            text += f" at {self.interval[0]:g} ≤ σ ≤ {self.interval[1]:g} (the plain conditional outside)"
        if self.autoguide_weight is not None:
            text += f", autoguided (weight {self.autoguide_weight:g})"
        if self.prior_below is not None and self.prior_keeps:
            text += f"; below σ {self.prior_below:g} its {', '.join(self.prior_keeps)} condition alone, unguided"
        elif self.prior_below is not None:
            text += f"; below σ {self.prior_below:g} its prior alone"
        if self.mirror_below is not None:
            what = f" ({', '.join(self.mirror_reflect)} reflected)" if self.mirror_reflect else ""
            text += f"; below σ {self.mirror_below:g} averaged with its mirror image{what}"
            if self.mirror_turns is not None:
                rows = " and ".join(f"{'/'.join(values)} {fam}" for fam, values in self.mirror_turns[0])
                text += f", {rows} rows turned a quarter or flipped up-down by octave of σ"
        if self.sampling_weight != self.guidance:
            text += f"; energies (infer) w = {self.guidance:g}"
        return text


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _pair_or_none(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None


def read_manifest(models_dir: str | os.PathLike) -> list[dict]:
    return load_manifest(models_dir)["models"]


def _load_validated(folder: str | os.PathLike, validate: Callable[[Any, str], Any], missing: str) -> dict:
    """``folder``'s manifest, parsed and checked by ``validate``; ``missing``: the error when there is none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ModelError(missing.format(path=path))
    data = _read_json(path)
    validate(data, str(path))
    return data


def load_manifest(models_dir: str | os.PathLike) -> dict:
    """The parsed, validated manifest of ``models_dir``."""
    return _load_validated(models_dir, validate_manifest, "no model manifest at {path} (set --models DIR or "
                           f"CONCEPTLANG_MODELS to a folder with {MANIFEST})")


def manifest_data(models_dir: str | os.PathLike, create: bool = False) -> dict:
    """The parsed, unvalidated manifest of ``models_dir``, for a writer to change and pass to
    :func:`write_manifest`. ``create``: an empty manifest when the folder has none."""
    path = Path(models_dir) / MANIFEST
    if not path.is_file():
        if create:
            return {"format_version": FORMAT_VERSION, "models": []}
        raise ModelError(f"no model manifest at {path}")
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ModelError(f"{path}: expected an object with a 'models' list")
    return data


def write_manifest(models_dir: str | os.PathLike, data: dict) -> None:
    """Validate the whole manifest, then replace ``models_dir``'s atomically (nothing is written
    when it is invalid)."""
    path = Path(models_dir) / MANIFEST
    validate_manifest(data, str(path))
    write_json(path, data)


def update_manifest(models_dir: str | os.PathLike, change: Callable[[dict], Any], create: bool = False) -> dict:
    """Apply ``change`` to the manifest of ``models_dir`` (in place) and write it with
    :func:`write_manifest`; returns the new manifest."""
    data = manifest_data(models_dir, create)
    change(data)
    write_manifest(models_dir, data)
    return data


# --------------------------------------------------------------------------------------------
# The judges manifest (models/judges/manifest.json)
# --------------------------------------------------------------------------------------------

JUDGE_KINDS = ("generator", "labelled")  # an entry without "kind" is a generator-trained judge


def _validate_judge_entry(name: str, entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise _err(where, f"must be an object, got {entry!r}")
    kind = entry.get("kind", "generator")
    if kind not in JUDGE_KINDS:
        raise _err(where, f"'kind' must be one of {', '.join(JUDGE_KINDS)}, got {kind!r}")
    domain = _need(entry, "domain", str, where)
    if domain != name:
        raise _err(where, f"'domain' must be the judge's key {name!r}, got {domain!r}")
    _file_and_checksum(entry, "judges folder", where)
    arch = _need(entry, "architecture", dict, where)
    _need(arch, "class", str, f"{where}, architecture")
    _need(arch, "kwargs", dict, f"{where}, architecture")
    for key in ("training", "metrics"):
        if not isinstance(entry.get(key, {}), dict):
            raise _err(where, f"{key!r} must be an object, got {entry[key]!r}")
    if kind == "labelled":
        names: set[str] = set()
        for w, fam in _objects(_need(entry, "families", list, where), "families", where):
            _distinct_name(fam, "name", names, w)
            values = _need(fam, "values", list, w)
            if not values or not all(isinstance(v, str) and v for v in values):
                raise _err(w, f"'values' must be a non-empty list of names, got {values!r}")
            _need(fam, "none", bool, w)
        thresholds = _need(entry, "thresholds", dict, where)
        for key in ("confidence", "distance"):
            v = _need(thresholds, key, (int, float), f"{where}, thresholds")
            if not math.isfinite(v):
                raise _err(f"{where}, thresholds", f"{key!r} must be a finite number, got {v!r}")


def _file_and_checksum(entry: dict, folder: str, where: str) -> None:
    """``file``: a path inside ``folder``; ``sha256``: 64 lowercase hex digits."""
    file = _need(entry, "file", str, where)
    if not file or Path(file).is_absolute() or ".." in Path(file).parts:
        raise _err(where, f"'file' must be a path inside the {folder}, got {file!r}")
    sha = _need(entry, "sha256", str, where)
    if not _SHA.match(sha):
        raise _err(where, f"'sha256' must be 64 lowercase hex digits, got {sha!r}")


def validate_judges_manifest(data: Any, source: str = MANIFEST) -> dict[str, dict]:
    """Check a parsed judges manifest; return its ``judges`` mapping (domain → entry). Raises
    ModelError naming the file, the judge and the key at fault."""
    _check_header(data, source)
    judges = _need(data, "judges", dict, source)
    for name, entry in judges.items():
        _validate_judge_entry(name, entry, f"{source}, judge {name!r}")
    return judges


def load_judges_manifest(judges_dir: str | os.PathLike) -> dict:
    """The parsed, validated judges manifest of ``judges_dir``."""
    return _load_validated(judges_dir, validate_judges_manifest,
                           "no judge manifest at {path}; train the judges with `conceptlang judge train all -o DIR`")


def update_judges_manifest(judges_dir: str | os.PathLike, change: Callable[[dict], Any], create: bool = False) -> dict:
    """Apply ``change`` to the validated judges manifest of ``judges_dir`` (``create``: an empty
    one when the folder has none), validate the result and replace the file atomically (nothing is
    written when it is invalid); returns the new manifest."""
    path = Path(judges_dir) / MANIFEST
    if create and not path.is_file():
        data: dict = {"format_version": FORMAT_VERSION, "judges": {}}
    else:
        data = load_judges_manifest(judges_dir)
    change(data)
    validate_judges_manifest(data, str(path))
    write_json(path, data)
    return data


def verified_file(folder: str | os.PathLike, entry: dict, what: str) -> Path:
    """The file of manifest ``entry`` in ``folder``, after checking it is there and its sha256 is
    the entry's: ModelError naming the file (``what``: e.g. "judge checkpoint") otherwise."""
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise ModelError(f"{what} missing: {path}")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ModelError(f"{what} {path} fails its checksum: sha256 {digest}, the manifest says {entry['sha256']} "
                         "(the file is corrupt or was replaced)")
    return path
