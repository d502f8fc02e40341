#!/usr/bin/env python
"""Write the documentation grids of every domain and split (docs/images/data_*.png), and the
judges' corruption sets (docs/images/data_*_corruptions.png).

    python tools/gallery.py [OUT_DIR]      # default: docs/images

Every data grid is 8×4 images of seed 0, upscaled ×4 (nearest) so single pixels stay visible; a
corruption grid has one column per corruption kind, four rows (seed 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from conceptlang.data import DOMAIN_NAMES, generate, splits  # noqa: E402
from conceptlang.io import save_grid  # noqa: E402


def write_gallery(out_dir: Path, n: int = 32, scale: int = 4) -> list[Path]:
    written = []
    for dom in DOMAIN_NAMES:
        for split in splits(dom):
            imgs, _ = generate(dom, n, seed=0, split=split)
            path = out_dir / f"data_{dom}_{split}.png"
            save_grid(path, imgs, ncols=8, scale=scale)
            written.append(path)
    # Faces: one row per attribute value, everything else random, so each attribute can be seen.
    from conceptlang.data import faces as fc

    rows = []
    for _name, fam, val in [("male", "male", 0), ("not male", "male", -1), ("smiling", "smiling", 0),
                           ("not smiling", "smiling", -1), ("eyeglasses", "eyeglasses", 0),
                           ("no eyeglasses", "eyeglasses", -1), ("young", "young", 0), ("old", "young", -1)] + [
                              (h, "hair", i) for i, h in enumerate(fc.HAIR)]:
        arrays = fc.sample_face_arrays(8, seed=len(rows) + 1)
        arrays.index[fam][:] = val
        rows.append(fc.render_faces(arrays, 32))
    path = out_dir / "data_faces_attributes.png"
    save_grid(path, np.concatenate(rows), ncols=8, scale=scale)
    written.append(path)
    return written


def write_corruptions(out_dir: Path) -> list[Path]:
    from conceptlang.judge import validity as V

    written = []
    for dom in ("scenes", "faces"):
        kinds = V.CORRUPTION_KINDS[dom]
        bad, _ = V.corruptions(dom, 4 * len(kinds), seed=1)
        path = out_dir / f"data_{dom}_corruptions.png"
        save_grid(path, bad, ncols=len(kinds), scale=4)
        written.append(path)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/images")
    for p in write_gallery(out) + write_corruptions(out):
        print(p)
