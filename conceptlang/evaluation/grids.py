"""Image grids with a coloured frame per sample saying what the judge made of it.

Green: valid and satisfies the expression. Red: valid but does not satisfy it. Grey: invalid
(the judge's validity check failed: wrong number of objects, dirty background, ...). Looking at
the grids is part of the evaluation (training-findings.md: judged accuracy alone is not evidence).
"""

from __future__ import annotations

import numpy as np

OK = (40, 200, 60)
WRONG = (220, 40, 40)
INVALID = (120, 120, 120)
GAP = (255, 255, 255)


def framed_grid(
    images: np.ndarray,
    satisfied: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    ncols: int | None = None,
    scale: int = 2,
    frame: int = 2,
    gap: int = 2,
) -> np.ndarray:
    """Tile uint8 (N, H, W, 3) images, each upscaled by ``scale`` and framed by its judged outcome."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    if n == 0:
        raise ValueError("no images to tile")
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    ch, cw = h * scale + 2 * frame, w * scale + 2 * frame
    grid = np.empty((nrows * (ch + gap) + gap, ncols * (cw + gap) + gap, 3), np.uint8)
    grid[:] = GAP
    big = images.repeat(scale, axis=1).repeat(scale, axis=2)  # (N, H*s, W*s, 3)
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = gap + r * (ch + gap), gap + c * (cw + gap)
        if valid is not None and not bool(valid[i]):
            colour = INVALID
        elif satisfied is not None:
            colour = OK if bool(satisfied[i]) else WRONG
        else:
            colour = GAP
        grid[y : y + ch, x : x + cw] = colour
        grid[y + frame : y + frame + h * scale, x + frame : x + frame + w * scale] = big[i]
    return grid
