"""Venn-style figures: every region of two or three concepts, sampled and judged (paper, Fig. 5-7).

For concepts A, B (and C) each panel shows one region expression (``A & ~B``, ``A | B``, ...), a
small Venn icon with that region shaded, the judged accuracy with its 95% interval, and a grid of
samples framed by the judge's verdict (green: valid and satisfying; red: valid, not satisfying;
grey: invalid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from conceptlang.errors import ConceptLangError
from conceptlang.evaluation.grids import framed_grid
from conceptlang.evaluation.results import ExpressionResult
from conceptlang.evaluation.run import JudgeCache, check_entries, environment_info, evaluate_entry
from conceptlang.evaluation.suites import SuiteEntry, count_concepts, operator_class, parse_entry_text
from conceptlang.evaluation.tables import md_code

LETTERS = ("A", "B", "C")

# Region templates over the placeholders A, B, C.
REGIONS_2: tuple[str, ...] = (
    "A",
    "B",
    "A & B",
    "A & ~B",
    "~A & B",
    "~A & ~B",
    "A | B",
    "(A & ~B) | (~A & B)",
)
REGIONS_3: tuple[str, ...] = (
    "A & B & C",
    "A & B & ~C",
    "A & ~B & C",
    "~A & B & C",
    "A & ~B & ~C",
    "~A & B & ~C",
    "~A & ~B & C",
    "~A & ~B & ~C",
    "A | B | C",
    "A & (B | C)",
    "(A | B) & ~C",
    "(A & B) | C",
)


class FigureError(ConceptLangError):
    exit_code = 2


def region_templates(k: int) -> tuple[str, ...]:
    if k == 2:
        return REGIONS_2
    if k == 3:
        return REGIONS_3
    raise FigureError(f"a Venn figure takes 2 or 3 concepts, got {k}")


def substitute(template: str, concepts: Sequence[str]) -> str:
    """Replace the placeholders A, B, C of ``template`` by the concept expressions (parenthesised if compound)."""
    def wrap(text: str) -> str:
        t = text.strip()
        return t if re.fullmatch(r"[A-Za-z_][\w.]*(\([^()]*\))?", t) else f"({t})"

    mapping = {LETTERS[i]: wrap(c) for i, c in enumerate(concepts)}
    return re.sub(r"\b([ABC])\b", lambda m: mapping[m.group(1)], template)


def region_truth(template: str, membership: Sequence[bool]) -> bool:
    """Boolean value of a region template for one assignment of A, B, C."""
    from conceptlang.syntax import evaluate, parse_expr

    labels = {LETTERS[i]: bool(v) for i, v in enumerate(membership)}
    return bool(evaluate(parse_expr(template), labels))


def venn_icon(template: str, k: int, size: int = 64) -> np.ndarray:
    """uint8 (size, size, 3): k circles, the pixels inside the region shaded."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    r = size * (0.30 if k == 2 else 0.27)
    if k == 2:
        centres = [(size * 0.37, size * 0.5), (size * 0.63, size * 0.5)]
    else:
        centres = [(size * 0.37, size * 0.38), (size * 0.63, size * 0.38), (size * 0.5, size * 0.62)]
    inside = [((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r for cx, cy in centres]  # k × (size, size)
    # The truth table has 2^k rows; evaluate each once and index it by each pixel's membership code.
    table = np.zeros(2**k, dtype=bool)
    for code in range(2**k):
        table[code] = region_truth(template, [(code >> i) & 1 == 1 for i in range(k)])
    code_img = sum(inside[i].astype(np.int64) << i for i in range(k))
    icon = np.full((size, size, 3), 255, np.uint8)
    icon[table[code_img]] = (110, 160, 235)
    for cx, cy in centres:
        ring = np.abs(np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) - r) < 0.9
        icon[ring] = (30, 30, 30)
    return icon


@dataclass
class VennResult:
    concepts: tuple[str, ...]
    templates: tuple[str, ...]
    results: list[ExpressionResult]
    environment: dict

    def to_json(self) -> dict:
        return {
            "concepts": list(self.concepts),
            "environment": self.environment,
            "regions": [
                {"template": t, **r.to_json()} for t, r in zip(self.templates, self.results)
            ],
        }

    def markdown_table(self) -> str:
        names = ", ".join(f"{LETTERS[i]} = `{c}`" for i, c in enumerate(self.concepts))
        lines = [
            f"{names}",
            "",
            "| region | expression | valid | accuracy [95% CI] | s |",
            "| --- | --- | --- | --- | --- |",
        ]
        for t, r in zip(self.templates, self.results):
            if r.error:
                lines.append(f"| {md_code(t)} | {md_code(r.text)} | – | failed: {r.error} | {r.seconds:.1f} |")
            else:
                lines.append(
                    f"| {md_code(t)} | {md_code(r.text)} | {r.valid.value:.2f} | {r.accuracy.format()} | {r.seconds:.1f} |"
                )
        return "\n".join(lines)


def run_venn(
    concepts: Sequence[str],
    registry,
    n: int = 64,
    seed: int = 0,
    device: str = "auto",
    judges: JudgeCache | None = None,
    sample_kwargs: dict | None = None,
) -> VennResult:
    """Sample and judge every region of 2 or 3 concepts."""
    templates = region_templates(len(concepts))
    for c in concepts:
        parse_entry_text(c)  # fail early, with the parser's message, on a malformed concept
    judges = judges or JudgeCache()
    entries = {}
    for t in templates:
        text = substitute(t, concepts)
        expr = parse_entry_text(text)
        entries[t] = SuiteEntry(name=text, text=text, expr=expr, operator=operator_class(expr),
                                n_concepts=count_concepts(expr))
    # every region compiles before any is sampled: an unknown name fails at once, not region by region
    check_entries(((f"region {t}", e) for t, e in entries.items()), registry)
    results = [evaluate_entry(entry, registry, judges, n=n, base_seed=seed, device=device,
                              sample_kwargs=sample_kwargs, keep_images=True) for entry in entries.values()]
    return VennResult(tuple(concepts), templates, results, environment_info(device))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def render_venn(venn: VennResult, show: int = 16, ncols: int | None = None, scale: int = 2) -> np.ndarray:
    """Draw the figure as one uint8 (H, W, 3) image."""
    from PIL import Image, ImageDraw

    k = len(venn.concepts)
    ncols = ncols or 4
    panels = []
    title_font, font = _font(15), _font(12)
    for t, r in zip(venn.templates, venn.results):
        icon = venn_icon(t, k, size=64)
        if r.images is not None and len(r.images):
            m = min(show, len(r.images))
            sat = np.array(r.per_sample["satisfied"][:m])
            val = np.array(r.per_sample["valid"][:m])
            grid = framed_grid(r.images[:m], sat, val, ncols=int(np.ceil(np.sqrt(m))), scale=scale)
        else:
            grid = np.full((64, 64, 3), 255, np.uint8)
        gh, gw = grid.shape[:2]
        pw = max(gw, 64 + 8 + 150)
        ph = 64 + 44 + gh + 8
        panel = Image.new("RGB", (pw + 16, ph), "white")
        panel.paste(Image.fromarray(icon), (8, 4))
        d = ImageDraw.Draw(panel)
        d.text((80, 8), t, fill=(0, 0, 0), font=title_font)
        if r.error:
            d.text((80, 30), "failed", fill=(200, 0, 0), font=font)
        else:
            lo, hi = r.accuracy.interval
            d.text((80, 30), f"acc {r.accuracy.value:.2f}", fill=(0, 0, 0), font=title_font)
            d.text((80, 50), f"[{lo:.2f}, {hi:.2f}] n={r.accuracy.trials}", fill=(60, 60, 60), font=font)
        expr_text = r.text if len(r.text) <= 44 else r.text[:41] + "..."
        d.text((8, 72), expr_text, fill=(40, 40, 40), font=font)
        panel.paste(Image.fromarray(grid), (8, 64 + 44))
        panels.append(panel)
    pw = max(p.width for p in panels)
    ph = max(p.height for p in panels)
    nrows = int(np.ceil(len(panels) / ncols))
    header = 56
    fig = Image.new("RGB", (ncols * pw, header + nrows * ph), "white")
    d = ImageDraw.Draw(fig)
    names = "   ".join(f"{LETTERS[i]} = {c}" for i, c in enumerate(venn.concepts))
    d.text((10, 8), names, fill=(0, 0, 0), font=_font(18))
    env = venn.environment
    n = venn.results[0].n if venn.results else 0
    total = sum(r.seconds for r in venn.results)
    d.text(
        (10, 32),
        f"n = {n} per region, judged accuracy (valid AND satisfying) with 95% CI; frames: green ok, red wrong, grey invalid; "
        f"{env.get('device', '?')}, torch {env.get('torch', '?')}, {total:.0f} s",
        fill=(80, 80, 80),
        font=font,
    )
    for i, p in enumerate(panels):
        r_, c_ = divmod(i, ncols)
        fig.paste(p, (c_ * pw, header + r_ * ph))
    return np.asarray(fig)


def save_venn(path: str | Path, venn: VennResult, **kw) -> None:
    from conceptlang.io import save_png

    save_png(path, render_venn(venn, **kw))


def contact_sheet(results: Sequence[ExpressionResult], show: int = 12, scale: int = 2, title: str = "") -> np.ndarray:
    """One row per expression: its text and judged accuracy, then its first ``show`` samples, framed.

    The results must have been evaluated with ``keep_images=True``.
    """
    from PIL import Image, ImageDraw

    font, bold = _font(12), _font(14)
    label_w = 300
    strips = []
    for r in results:
        if r.images is not None and len(r.images):
            m = min(show, len(r.images))
            sat = np.array(r.per_sample["satisfied"][:m])
            val = np.array(r.per_sample["valid"][:m])
            strips.append(framed_grid(r.images[:m], sat, val, ncols=m, scale=scale))
        else:
            strips.append(None)
    row_h = max([s.shape[0] for s in strips if s is not None] or [40])
    strip_w = max([s.shape[1] for s in strips if s is not None] or [200])
    header = 30 if title else 6
    sheet = Image.new("RGB", (label_w + strip_w + 8, header + len(results) * (row_h + 4)), "white")
    d = ImageDraw.Draw(sheet)
    if title:
        d.text((8, 6), title, fill=(0, 0, 0), font=_font(16))
    for i, (r, s) in enumerate(zip(results, strips)):
        y = header + i * (row_h + 4)
        text = r.text if len(r.text) <= 40 else r.text[:37] + "..."
        d.text((8, y + 4), text, fill=(0, 0, 0), font=bold)
        if r.error or r.accuracy is None:
            d.text((8, y + 24), "failed", fill=(200, 0, 0), font=font)
        else:
            lo, hi = r.accuracy.interval
            d.text((8, y + 24), f"{r.accuracy.value:.2f} [{lo:.2f}, {hi:.2f}]  valid {r.valid.value:.2f}",
                   fill=(60, 60, 60), font=font)
        if s is not None:
            sheet.paste(Image.fromarray(s), (label_w, y))
    return np.asarray(sheet)
