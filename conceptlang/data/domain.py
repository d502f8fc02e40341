"""How a data domain describes itself, so the registry and compiler can resolve names from it.

Ground-truth labels (the form the boolean semantics uses) are a flat ``dict`` of concept → bool,
keyed both by qualified name (``"color.red"``) and bare value name (``"red"``), plus ``"objects"``:
a list of per-object dicts with at least ``x`` and ``y`` in [0, 1] measured from the top-left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Family:
    """One concept family of a domain.

    * ``kind == "discrete"``: the family takes one of ``values`` (per object for scenes);
      ``exclusive`` says that two values cannot hold of the same object at once.
    * ``kind == "continuous"``: a parameterised concept such as ``position(x, y)``; ``params``
      names the parameters and ``ranges`` gives their bounds.
    """

    name: str
    kind: Literal["discrete", "continuous"]
    values: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    ranges: tuple[tuple[float, float], ...] = ()
    exclusive: bool = True
    description: str = ""


@dataclass(frozen=True)
class Domain:
    name: str
    image_size: int
    channels: int
    families: tuple[Family, ...]
    description: str = ""

    def family(self, name: str) -> Family:
        for fam in self.families:
            if fam.name == name:
                return fam
        known = ", ".join(f.name for f in self.families)
        from conceptlang.errors import DataError

        raise DataError(f"domain {self.name!r} has no family {name!r} (families: {known})")

    def families_with_value(self, value: str) -> list[Family]:
        return [f for f in self.families if f.kind == "discrete" and value in f.values]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "image_size": self.image_size,
            "channels": self.channels,
            "description": self.description,
            "families": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "values": list(f.values),
                    "params": list(f.params),
                    "ranges": [list(r) for r in f.ranges],
                    "exclusive": f.exclusive,
                    "description": f.description,
                }
                for f in self.families
            ],
        }
