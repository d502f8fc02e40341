"""Model sets: the folders of models an expression can be compiled against.

A models folder is one *model set* (its ``manifest.json``). Its manifest may list others under
``model_sets`` (folders inside it), and the compiler turns to one of those on its own when the
expression asks for something the folder's own models were not trained for: the shipped
``models/`` lists ``objects`` (``models/objects``: the scenes model fine-tuned on one- and
two-object scenes, ``max_objects`` 2), so ``position(a) & position(b)`` is sampled with it while
every single-object expression keeps the main scenes model.

A folder given with ``--models`` that lists no such set is not switched away from; when it does
not serve an expression, the compiler's warning (or error) names a shipped set that would
(:attr:`ModelSet.selectable` False: named, never used on its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from conceptlang.resources import display_path

if TYPE_CHECKING:
    from conceptlang.models.registry import ModelRegistry


@dataclass
class ModelSet:
    """One model set: a folder with a manifest, loaded on first use."""

    name: str
    path: Path
    selectable: bool  # listed by the models in use: the compiler may switch to it by itself
    about: str = ""
    _registry: "ModelRegistry | None" = field(default=None, repr=False)

    @property
    def registry(self) -> "ModelRegistry":
        if self._registry is None:
            from conceptlang.errors import ModelError
            from conceptlang.models.registry import load_registry

            try:
                self._registry = load_registry(self.path)
            except ModelError as err:
                raise ModelError(f"model set {self.name!r}: {err}") from None
        return self._registry

    @property
    def where(self) -> str:
        return display_path(self.path)

    @property
    def option(self) -> str:
        """How a user asks for this set on the command line."""
        return f"--models {self.where}"

    def describe(self) -> str:
        return f"model set {self.name!r} ({self.where})"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:  # pragma: no cover - unreadable paths are simply different
        return False


def model_sets_of(registry: "ModelRegistry") -> list[ModelSet]:
    """The sets ``registry`` may turn to (its manifest's ``model_sets``, selectable), then the
    shipped sets it could be pointed at instead (the shipped folder and its listed sets, not
    selectable), leaving out the folder ``registry`` itself reads."""
    from conceptlang.models.manifest import MANIFEST, load_manifest
    from conceptlang.resources import shipped_models_dir

    own = registry.models_dir
    out = [ModelSet(s["name"], own / s["path"], True, s.get("about", "")) for s in registry.set_specs]
    shipped = shipped_models_dir()
    if (shipped / MANIFEST).is_file() and not _same(shipped, own):
        seen = [own] + [s.path for s in out]
        candidates = [ModelSet("default", shipped, False, "the shipped models")]
        try:
            specs = load_manifest(shipped).get("model_sets", [])
        except Exception:  # a damaged shipped manifest only costs the suggestion
            specs = []
        candidates += [ModelSet(s["name"], shipped / s["path"], False, s.get("about", "")) for s in specs]
        out += [c for c in candidates if not any(_same(c.path, p) for p in seen)]
    return out
