"""Chunks of a training data stream (numpy only; the trainer's DataStream batches them).

Chunk ``c`` of a stream is a pure function of (domain, split mixture, data seed, c), so a
stream's position is its chunk number and worker processes can draw chunks ahead of the loop.
"""

from __future__ import annotations

import numpy as np

from conceptlang.data import generate


def chunk_arrays(domain: str, parts: list[tuple[str, int]], data_seed: int, c: int,
                 image_size: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Chunk ``c`` of a data stream as numpy arrays: (uint8 images, family index arrays, positions).

    ``parts`` lists (split, count) of the mixture. Label arrays are padded to two objects per image
    (a one-object image repeats its object), so one-object and two-object splits mix in one batch.
    A pure function of its arguments that needs numpy alone, so worker processes (which then
    never import torch) build chunks ahead of a training loop with the same result.
    ``image_size`` renders at another side than the domain's (the same geometry, more pixels).
    """

    imgs, idx, pos = [], {}, []
    for j, (split, count) in enumerate(parts):
        if count <= 0:
            continue
        seed = (data_seed * 1_000_003 + c * 101 + j) % (2**32)
        images, arrays = generate(domain, count, seed=seed, split=split, image_size=image_size, as_arrays=True)
        imgs.append(images)
        p = np.asarray(arrays.positions, dtype=np.float32)  # (n, K, 2)
        k = p.shape[1]
        pad = (lambda a: np.concatenate([a, a[:, :1].repeat(2 - k, axis=1)], axis=1)) if k < 2 else (lambda a: a[:, :2])
        pos.append(pad(p))
        for fam, arr in arrays.index.items():
            idx.setdefault(fam, []).append(pad(np.asarray(arr)))
    total = sum(count for _, count in parts)
    perm = np.random.default_rng([data_seed, c]).permutation(total)
    return np.concatenate(imgs)[perm], {f: np.concatenate(v)[perm] for f, v in idx.items()}, np.concatenate(pos)[perm]
