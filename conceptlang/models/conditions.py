"""Condition slots of a domain: turning families and labels into condition tensors.

A joint model has one **slot** per concept family. The condition tensor (see
:mod:`conceptlang.models.networks`) carries, per slot, a token (discrete) or a presence flag and
parameters (continuous). Token 0 is null ("this family is not constrained"); the all-null condition
is the domain prior. Binary families whose value may be absent (``male``) get one extra token,
``<none>``, so that training can show the model known-absent attributes too; that token is never
exposed as a concept name.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from conceptlang.data.domain import Domain
from conceptlang.errors import ModelError
from conceptlang.interface import Drawn
from conceptlang.models.networks import SlotSpec, condition_width, slot_offsets

NONE_TOKEN = "<none>"


class _Absent:
    """Condition value "this binary attribute is known not to hold" (the ``<none>`` token).

    A sentinel object rather than the string, so no user-written value can reach the token; concept
    inference uses it to weigh E(x | c) against E(x | not c).
    """

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


def has_absent_token(slots: tuple[SlotSpec, ...], family: str) -> bool:
    return any(s.family == family and NONE_TOKEN in s.values for s in slots)


def slots_for_domain(domain: Domain, families: Sequence[str] | None = None) -> tuple[SlotSpec, ...]:
    """One slot per family of ``domain`` (or of ``families``, in the domain's order)."""
    wanted = None if families is None else set(families)
    out = []
    for fam in domain.families:
        if wanted is not None and fam.name not in wanted:
            continue
        if fam.kind == "discrete":
            values = tuple(fam.values)
            # A one-value family (a binary attribute) can be known-absent: give that its own token.
            if len(values) == 1:
                values = values + (NONE_TOKEN,)
            out.append(SlotSpec(fam.name, "discrete", values=values))
        else:
            out.append(SlotSpec(fam.name, "continuous", params=tuple(fam.params), ranges=tuple(fam.ranges)))
    if wanted is not None:
        missing = wanted - {s.family for s in out}
        if missing:
            raise ModelError(f"domain {domain.name!r} has no families {sorted(missing)}")
    return tuple(out)


def encode_conditions(slots: tuple[SlotSpec, ...], conditions: Sequence[Mapping[str, object]]) -> torch.Tensor:
    """Conditions (family → value name, or family → tuple of floats) → float tensor (L, D)."""
    by_family = {s.family: s for s in slots}
    out = torch.zeros(len(conditions), condition_width(slots))
    offsets = slot_offsets(slots)
    for i, cond in enumerate(conditions):
        for fam, value in cond.items():
            slot = by_family.get(fam)
            if slot is None:
                raise ModelError(f"model has no condition slot for family {fam!r} (slots: {', '.join(by_family)})")
            c = offsets[fam]
            if isinstance(value, Drawn):
                if (slot.kind == "discrete") != (value.values is not None):
                    raise ModelError(f"{fam!r} is {slot.kind}: a per-chain draw of it must "
                                     f"{'name its values' if slot.kind == 'discrete' else 'be parameters'}")
                continue  # null until the sampler fills in each chain's draw
            if slot.kind == "discrete" and value is ABSENT:
                if NONE_TOKEN not in slot.values:
                    raise ModelError(f"{fam!r} has no known-absent token (it is not a yes/no attribute)")
                out[i, c] = float(slot.values.index(NONE_TOKEN) + 1)
            elif slot.kind == "discrete":
                if not isinstance(value, str) or value not in slot.values or value == NONE_TOKEN:
                    known = ", ".join(v for v in slot.values if v != NONE_TOKEN)
                    raise ModelError(f"{fam!r} has no value {value!r} (values: {known})")
                out[i, c] = float(slot.values.index(value) + 1)
            else:
                try:
                    params = tuple(float(v) for v in value)  # type: ignore[union-attr]
                except TypeError:
                    raise ModelError(f"{fam!r} takes {len(slot.params)} numbers, got {value!r}") from None
                if len(params) != len(slot.params):
                    raise ModelError(f"{fam!r} takes {len(slot.params)} parameters ({', '.join(slot.params)}), got {len(params)}")
                for p, (lo, hi), name in zip(params, slot.ranges, slot.params):
                    if not (np.isfinite(p) and lo <= p <= hi):
                        raise ModelError(f"{fam}: {name}={p} is outside its range [{lo}, {hi}]")
                out[i, c] = 1.0
                out[i, c + 1 : c + 1 + len(params)] = torch.tensor(params)
    return out


def training_conditions(
    slots: tuple[SlotSpec, ...],
    index: Mapping[str, np.ndarray],
    positions: np.ndarray,
    dropout: float,
    generator: torch.Generator,
    p_null: float = 0.0,
    p_single: float = 0.0,
) -> torch.Tensor:
    """Condition tensor (N, D) for a training batch, from the data's label arrays.

    ``index[family]`` is int (N, K) value indices per object (−1: no value holds), ``positions``
    (N, K, 2). One object per image is picked and *all* slots describe that object, so the joint
    condition binds attributes to one object. Then, per image: with probability ``p_null`` every
    slot is null (the prior); with probability ``p_single`` exactly one random slot is kept (the
    compiler's leaves are single-family conditions, so these are trained often); otherwise each
    slot is dropped to null independently with probability ``dropout``.
    """
    n, k = positions.shape[0], positions.shape[1]
    obj = torch.randint(0, k, (n,), generator=generator) if k > 1 else torch.zeros(n, dtype=torch.long)
    rows = torch.arange(n)
    u = torch.rand(n, generator=generator)  # (N,) which dropout mode
    single = torch.randint(0, len(slots), (n,), generator=generator)  # (N,) the kept slot in mode 2
    indep = torch.rand(n, len(slots), generator=generator) >= dropout  # (N, S)
    keep_all = torch.where(
        (u < p_null)[:, None],
        torch.zeros_like(indep),
        torch.where((u < p_null + p_single)[:, None], single[:, None] == torch.arange(len(slots)), indep),
    ).float()  # (N, S)
    cols = []
    for j, s in enumerate(slots):
        keep = keep_all[:, j]  # (N,)
        if s.kind == "discrete":
            idx = torch.from_numpy(np.asarray(index[s.family])).long()[rows, obj]  # (N,)
            # −1 (absent) maps to the <none> token, the last one, where the slot has one (a yes/no
            # attribute), else to null (a family with no known value here, e.g. a CelebA face with
            # none of the grouped hair colours); value i maps to token i + 1.
            absent = len(s.values) if NONE_TOKEN in s.values else 0
            tok = torch.where(idx >= 0, idx + 1, torch.full_like(idx, absent))
            cols.append((tok.float() * keep)[:, None])
        else:
            p = torch.from_numpy(np.asarray(positions)).float()[rows, obj]  # (N, 2)
            cols.append(torch.cat([keep[:, None], p * keep[:, None]], dim=1))
    return torch.cat(cols, dim=1)
