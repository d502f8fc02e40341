"""Spread draws: n per-chain values of a continuous family that cover its region evenly.

The sampler draws each chain's own value of a drawn continuous family (scenes ``position``) from
the data (the registry's ``value_draws``). Independent draws repeat themselves: 256 centres drawn
independently within a named position's disc of radius 0.1 put more than a quarter of the chains
within about a tenth of a pixel of another chain, and their images are near-duplicates. A spread
draw keeps every chain's value distributed exactly as the data's but places the n values of one
call apart (n: the chains that use the drawn leaf):

1. Draw a pool of side² · n independent values (the same ``value_draws``).
2. Cut the pool into n cells of side² values each: a k-d tree that splits a cell at the count
   quantile of its widest axis (axes measured in units of the pool's standard deviation).
3. Every cell gives the value at the same relative place, from one shared random (a, b) in
   {0, …, side − 1}²: its values sorted along the pool's widest axis form side slabs of side
   values; take slab a, sorted along the pool's next-widest axis, and its value b.
4. Shuffle the n picks over the chains.

For each cell the side² choices of (a, b) pick each of its values exactly once, so every pool
value is picked with probability 1/(side² · n) whatever the pool holds; a value picked uniformly
from an independent sample of the data is itself a draw from the data. The picks sit at the same
relative place in cells of equal mass, so neighbouring chains are about a cell apart: a lattice
bent to the data's density, randomly shifted, like the systematic draws of OR branches
(:func:`conceptlang.sampling.api.stratified_branches`).
"""

from __future__ import annotations

import math

import numpy as np

SPREAD_SIDE = 6  # a chain's value is one of SPREAD_SIDE² pool values of its cell
SPREAD_POOL_MAX = 1 << 18  # at most this many pool values (the side shrinks for very many chains)
DRAW_MODES = ("spread", "independent")


def spread_side(n: int) -> int:
    """The side for ``n`` chains: :data:`SPREAD_SIDE`, smaller (at least 2) where side² · n would
    exceed :data:`SPREAD_POOL_MAX`."""
    return max(2, min(SPREAD_SIDE, math.isqrt(SPREAD_POOL_MAX // max(1, int(n)))))


def spread_picks(pool: np.ndarray, n: int, side: int, a: int, b: int) -> np.ndarray:
    """Row indices (n,) into ``pool`` (side² · n, P), one per k-d cell in cell order, each the
    value at slab ``a``, rank ``b`` of its cell (see the module docstring). Deterministic."""
    pool = np.asarray(pool, dtype=np.float64)
    if pool.ndim != 2 or pool.shape[0] != side * side * n:
        raise ValueError(f"a spread draw of {n} values with side {side} needs a pool of "
                         f"{side * side * n} rows, got shape {pool.shape}")
    if not (0 <= a < side and 0 <= b < side):
        raise ValueError(f"slab and rank must be in 0..{side - 1}, got {a}, {b}")
    c = side * side
    scale = pool.std(axis=0)
    z = pool / np.where(scale > 0, scale, 1.0)
    # The place inside a cell is read along the same two axes in every cell (the pool's widest
    # two), so neighbouring cells' picks sit a cell apart, not in a shared corner.
    place_axes = np.argsort(-(z.max(axis=0) - z.min(axis=0)), kind="stable")[:2]
    picks = np.empty(n, dtype=np.int64)
    stack = [(np.arange(pool.shape[0]), n, 0)]  # (pool rows of the cell, its chains, its first slot)
    while stack:
        rows, k, slot = stack.pop()
        pts = z[rows]
        if k == 1:
            slab = rows[np.argsort(pts[:, place_axes[0]], kind="stable")][a * side:(a + 1) * side]
            picks[slot] = slab[np.argsort(z[slab, place_axes[-1]], kind="stable")][b]
            continue
        widest = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
        along = rows[np.argsort(pts[:, widest], kind="stable")]
        left = k // 2
        stack.append((along[:left * c], left, slot))
        stack.append((along[left * c:], k - left, slot + left))
    return picks


def spread_rows(pool: np.ndarray, n: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices (n,) into the side² · n independent draws in ``pool``, spread over their region
    and shuffled over the chains (see the module docstring); each chain's row is distributed as
    one draw of the pool's distribution."""
    a, b = (int(v) for v in rng.integers(0, side, size=2))
    return spread_picks(pool, n, side, a, b)[rng.permutation(n)]


def spread_draws(pool: np.ndarray, n: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values (n, P) of the side² · n independent draws in ``pool``: :func:`spread_rows`'s rows."""
    return np.asarray(pool)[spread_rows(pool, n, side, rng)]
