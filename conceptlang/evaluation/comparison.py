"""Samples beside generator data that satisfies the same expression, for looking at coverage.

One row per expression: its text with accuracy and the distribution figures, then its first
samples framed by the judge's verdict (green: valid and satisfying, red: valid, not satisfying,
grey: invalid), then as many generator images that satisfy the expression (the reference of
:mod:`conceptlang.evaluation.distribution`, unframed). A sampler that collapses to one prototype
shows it at a glance: the left strip repeats one colour or size, the right one does not.

    conceptlang figure compare "triangle & ~green" "smiling & ~eyeglasses" -o compare.png
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from conceptlang.evaluation.grids import GAP, framed_grid


def reference_images(result, show: int, base_seed: int = 0) -> np.ndarray | None:
    """The first ``show`` reference images of ``result``'s expression (those its distribution
    figures used when measured, else a fresh draw with the same seed)."""
    d = getattr(result, "distribution", None)
    if d is not None and d.reference_images is not None and len(d.reference_images):
        return d.reference_images[:show]
    from conceptlang.evaluation.distribution import REFERENCE_DOMAINS, reference_for, reference_seed
    from conceptlang.evaluation.suites import parse_entry_text

    if result.domain not in REFERENCE_DOMAINS:
        return None
    ref = reference_for(parse_entry_text(result.text), result.domain, n_images=show,
                        seed=reference_seed(result.text, base_seed), n_labels=show)
    return ref.images[:show] if len(ref.images) else None


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 12) -> np.ndarray:
    """Two uint8 (H, W, 3) images next to each other, top-aligned, on white."""
    h = max(left.shape[0], right.shape[0])
    out = np.empty((h, left.shape[1] + gap + right.shape[1], 3), np.uint8)
    out[:] = GAP
    out[: left.shape[0], : left.shape[1]] = left
    out[: right.shape[0], left.shape[1] + gap :] = right
    return out


def comparison_sheet(results: Sequence, show: int = 8, scale: int = 2, title: str = "",
                     base_seed: int = 0) -> np.ndarray:
    """One row per result: label, first ``show`` samples (framed), first ``show`` reference images.

    The results must have been evaluated with ``keep_images=True``.
    """
    from PIL import Image, ImageDraw

    from conceptlang.evaluation.figures import _font

    font, bold = _font(12), _font(14)
    label_w = 300
    rows = []
    for r in results:
        left = right = None
        if r.images is not None and len(r.images):
            m = min(show, len(r.images))
            left = framed_grid(r.images[:m], np.array(r.per_sample["satisfied"][:m]),
                               np.array(r.per_sample["valid"][:m]), ncols=m, scale=scale)
            real = reference_images(r, m, base_seed)
            if real is not None and len(real):
                right = framed_grid(real, ncols=len(real), scale=scale)
        rows.append((left, right))
    strip_h = max([x.shape[0] for pair in rows for x in pair if x is not None] or [40])
    left_w = max([a.shape[1] for a, _ in rows if a is not None] or [200])
    right_w = max([b.shape[1] for _, b in rows if b is not None] or [200])
    header = 48 if title else 26
    row_h = max(strip_h, 58) + 4
    sheet = Image.new("RGB", (label_w + left_w + 16 + right_w + 8, header + len(rows) * row_h), "white")
    d = ImageDraw.Draw(sheet)
    if title:
        d.text((8, 6), title, fill=(0, 0, 0), font=_font(16))
    d.text((label_w, header - 20), "samples (frame: green ok, red wrong, grey invalid)", fill=(60, 60, 60), font=font)
    d.text((label_w + left_w + 16, header - 20), "generator data satisfying the expression", fill=(60, 60, 60),
           font=font)
    for i, (r, (left, right)) in enumerate(zip(results, rows)):
        y = header + i * row_h
        text = r.text if len(r.text) <= 40 else r.text[:37] + "..."
        d.text((8, y + 2), text, fill=(0, 0, 0), font=bold)
        if r.error or r.accuracy is None:
            d.text((8, y + 22), "failed", fill=(200, 0, 0), font=font)
        else:
            d.text((8, y + 20), f"accuracy {r.accuracy.value:.2f}  valid {r.valid.value:.2f}", fill=(60, 60, 60),
                   font=font)
            m = getattr(r, "distribution", None)
            if m is not None:
                bits = []
                if m.worst_family is not None:
                    bits.append(f"TV max {m.tv_max:.2f} ({m.worst_family.family})")
                if m.recall is not None:
                    bits.append(f"P {m.precision:.2f} R {m.recall:.2f}")
                d.text((8, y + 36), "  ".join(bits), fill=(60, 60, 60), font=font)
        if left is not None:
            sheet.paste(Image.fromarray(left), (label_w, y))
        if right is not None:
            sheet.paste(Image.fromarray(right), (label_w + left_w + 16, y))
    return np.asarray(sheet)


__all__ = ["comparison_sheet", "reference_images", "side_by_side"]
