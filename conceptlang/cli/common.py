"""Options and helpers shared by the command modules, so that each means the same everywhere.

* ``--device``: ``auto`` (the default everywhere: cuda, then mps, then cpu), ``cpu``, ``cuda``,
  ``cuda:N`` or ``mps``;
* ``--models``: a models folder, or ``analytic[:KIND]`` for the analytic Gaussian models; one
  loader (:func:`load_registry_for`) for every command;
* ``--threads``: torch CPU threads;
* ``--json`` is a flag that prints JSON to standard output; files are named with ``-o``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click


class DeviceType(click.ParamType):
    name = "device"
    _PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?\Z")

    def convert(self, value, param, ctx):
        text = str(value)
        if not self._PATTERN.match(text):
            self.fail(f"{text!r} is not a device: use auto, cpu, cuda, cuda:N or mps", param, ctx)
        return text

    def get_metavar(self, param, ctx=None) -> str:
        return "[auto|cpu|cuda|cuda:N|mps]"


def device_option(f):
    return click.option("--device", type=DeviceType(), default="auto", show_default=True,
                        help="auto: cuda, then mps, then cpu.")(f)


def models_option(f):
    return click.option("--models", "models", metavar="DIR", default=None,
                        help="Models folder (default: $CONCEPTLANG_MODELS or the shipped models); "
                             "'analytic[:explicit|noise_conditional|implicit]' for the analytic Gaussians.")(f)


threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None,
    help="torch CPU threads (default: torch's choice; 1 is much faster when other jobs share the CPU).",
)


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def torch_device(device: str) -> str:
    """``--device`` as the device name torch takes (``auto`` resolved; an absent accelerator is an error)."""
    from conceptlang.sampling.api import resolve_device

    return str(resolve_device(device))


def load_registry_for(models: str | None):
    """``--models``: a models folder, or ``analytic[:kind]`` for the analytic Gaussian registry."""
    if models is not None and (models == "analytic" or models.startswith("analytic:")):
        from conceptlang.models.analytic import GaussianRegistry

        kind = models.split(":", 1)[1] if ":" in models else "explicit"
        if kind not in ("explicit", "noise_conditional", "implicit"):
            raise click.UsageError(f"--models analytic:KIND takes explicit, noise_conditional or implicit, not {kind!r}")
        return GaussianRegistry(kind=kind)
    from conceptlang.models.registry import load_registry

    return load_registry(models)


def models_folder(models: str | None) -> Path:
    """``--models`` where a command needs a folder on disk (it writes into the manifest)."""
    from conceptlang.models.registry import default_models_dir

    if models is not None and (models == "analytic" or models.startswith("analytic:")):
        raise click.UsageError("--models analytic has no manifest to write to; give a models folder")
    return Path(models) if models is not None else default_models_dir()


def read_source(path: str) -> str:
    """Text of a file, or of stdin for '-', read as UTF-8; a leading byte order mark is skipped.

    Unreadable or non-UTF-8 input is a usage error (exit 2)."""
    try:
        if path == "-":
            stream = getattr(sys.stdin, "buffer", None)
            text = stream.read().decode("utf-8") if stream is not None else sys.stdin.read()
        else:
            text = Path(path).read_bytes().decode("utf-8")
        return text[1:] if text.startswith("\ufeff") else text
    except UnicodeDecodeError as err:
        raise click.UsageError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise click.UsageError(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError:  # a NUL character in the path
        raise click.UsageError(f"{path!r}: cannot read (a path cannot contain a NUL character)") from None


def echo_json(obj) -> None:
    """``--json``: the object as indented JSON on standard output."""
    import json

    from conceptlang.io import jsonable

    click.echo(json.dumps(jsonable(obj), indent=2))
