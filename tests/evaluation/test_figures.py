import numpy as np
import pytest

from conceptlang.evaluation.figures import (
    REGIONS_2,
    REGIONS_3,
    FigureError,
    contact_sheet,
    region_templates,
    region_truth,
    render_venn,
    run_venn,
    save_venn,
    substitute,
    venn_icon,
)
from conceptlang.evaluation.run import JudgeCache
from conceptlang.syntax import parse_expr
from tests.evaluation.fakes import PixelJudge, install_fake_pipeline


def test_substitute_wraps_compound_concepts_only():
    assert substitute("A & ~B", ["male", "smiling"]) == "male & ~smiling"
    assert substitute("(A & ~B) | (~A & B)", ["color.red", "position(0.3, 0.7)"]) == (
        "(color.red & ~position(0.3, 0.7)) | (~color.red & position(0.3, 0.7))"
    )
    assert substitute("A & B & ~C", ["a", "red | blue", "c"]) == "a & (red | blue) & ~c"
    # The substituted text means the region with A := red | blue.
    e = parse_expr(substitute("A & ~B", ["red | blue", "large"]))
    assert e == parse_expr("(red | blue) & ~large")


def test_region_sets_are_distinct_and_cover_every_minterm():
    for k, regions in ((2, REGIONS_2), (3, REGIONS_3)):
        assert region_templates(k) == regions
        tables = set()
        for t in regions:
            rows = tuple(region_truth(t, [(c >> i) & 1 == 1 for i in range(k)]) for c in range(2**k))
            tables.add(rows)
        assert len(tables) == len(regions)  # no two regions are the same set
        minterms = {tuple(c == j for c in range(2**k)) for j in range(2**k)}
        assert minterms <= tables  # every atom of the Venn diagram is a panel
    with pytest.raises(FigureError, match="2 or 3"):
        region_templates(4)


def test_region_truth():
    assert region_truth("A & ~B", [True, False]) is True
    assert region_truth("A & ~B", [True, True]) is False
    assert region_truth("(A & B) | C", [False, False, True]) is True


def test_venn_icon_shades_exactly_the_region():
    size = 64
    a_only, both, outside = (9, 32), (32, 32), (2, 2)  # (x, y) pixels
    icon = venn_icon("A & ~B", 2, size)
    shaded = lambda p: tuple(icon[p[1], p[0]]) == (110, 160, 235)  # noqa: E731
    assert shaded(a_only) and not shaded(both) and not shaded(outside)
    icon = venn_icon("A & B", 2, size)
    assert shaded(both) and not shaded(a_only)
    icon = venn_icon("~A & ~B", 2, size)
    assert shaded(outside) and not shaded(both)


def test_run_and_render_venn(monkeypatch, tmp_path):
    calls = install_fake_pipeline(monkeypatch)
    venn = run_venn(["A", "B"], None, n=8, seed=1, device="cpu", judges=JudgeCache(lambda d: PixelJudge()))
    assert [r.text for r in venn.results] == list(REGIONS_2)
    assert len(calls) == 8 and all(n == 8 for _, n, _ in calls)
    # The fake sampler only draws satisfying assignments, all valid: every region scores 8/8.
    assert all(r.accuracy.successes == 8 and r.accuracy.trials == 8 for r in venn.results)
    img = render_venn(venn, show=4)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[1] == 4 * (img.shape[1] // 4)
    save_venn(tmp_path / "v.png", venn, show=4)
    assert (tmp_path / "v.png").stat().st_size > 1000
    table = venn.markdown_table()
    assert "| `A & ~B` | `A & ~B` | 1.00 | 1.00 [0.68, 1.00] |" in table
    sheet = contact_sheet(venn.results, show=4, title="t")
    assert sheet.shape[0] > 8 * 8


def test_run_venn_rejects_bad_concepts():
    from conceptlang.errors import ParseError

    with pytest.raises(ParseError):
        run_venn(["male", "smi ling &"], None, n=2)
    with pytest.raises(FigureError):
        run_venn(["male"], None, n=2)
