"""Loading the judges: ``models/judges/`` holds one safetensors checkpoint per domain and a
``manifest.json`` (read, validated and written by :mod:`conceptlang.models.manifest`) with each
checkpoint's sha256, architecture, training configuration and measured figures. The checksum is
verified on load.

    >>> from conceptlang.judge import load_judge
    >>> load_judge("scenes").valid(images_uint8)
"""

from __future__ import annotations

from pathlib import Path

from conceptlang.errors import ModelError
from conceptlang.judge.judge import Judge
from conceptlang.judge.networks import NETWORKS
from conceptlang.models.manifest import load_judges_manifest, verified_file


def judges_dir() -> Path:
    """The shipped judges' folder."""
    from conceptlang.resources import shipped_models_dir

    return shipped_models_dir() / "judges"


_CACHE: dict[tuple[str, str], Judge] = {}


def clear_cache() -> None:
    """Forget the loaded judges (after a judges folder was written)."""
    _CACHE.clear()


def load_judge(domain: str, directory: str | Path | None = None) -> Judge:
    """The judge for ``domain`` ("scenes" or "faces"), checksum-verified; cached per directory."""
    if domain not in NETWORKS:
        raise ModelError(f"no judge for domain {domain!r} (judges: {', '.join(NETWORKS)})")
    d = Path(directory) if directory is not None else judges_dir()
    key = (str(d.resolve()), domain)
    if key in _CACHE:
        return _CACHE[key]
    entry = load_judges_manifest(d)["judges"].get(domain)
    if entry is None:
        raise ModelError(f"{d / 'manifest.json'}: no entry for the {domain!r} judge")
    path = verified_file(d, entry, "judge checkpoint")
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
        net = NETWORKS[domain](**entry["architecture"]["kwargs"])
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as err:  # safetensors/torch raise many types for a damaged file
        raise ModelError(f"cannot load judge checkpoint {path}: {err}") from None
    judge = Judge(domain, net, entry)
    _CACHE[key] = judge
    return judge
