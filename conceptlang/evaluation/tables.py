"""The Markdown tables of an evaluation: one row per expression, pooled accuracy by operator,
by number of concepts and by tag, why samples were invalid, and the page ``conceptlang eval
--markdown`` writes (:func:`suite_markdown`).
"""

from __future__ import annotations

from typing import Callable, Sequence

from conceptlang.evaluation.results import BranchCoverage, ExpressionResult, SuiteResult


def md_code(text: str) -> str:
    """Inline code for a Markdown table cell: a bare '|' would end the cell, so it is escaped."""
    return "`" + text.replace("|", "\\|") + "`"


def _fmt_target(r: ExpressionResult) -> str:
    t = r.target
    if t is None:
        return "–"
    mark = "✓" if r.meets_target else "✗"
    return f"≥ {t:.2f} {mark}"


def _fmt_branches(r: ExpressionResult) -> str:
    if not r.branches:
        return ""
    def one(b: BranchCoverage) -> str:
        if not b.possible:
            return f"{md_code(b.text)}: no one object satisfies it"
        if not b.satisfied_valid.trials:
            return f"{md_code(b.text)} n/a"
        return f"{md_code(b.text)} {b.satisfied_valid.value:.2f}" + ("" if b.meets else " ✗")

    return "; ".join(one(b) for b in r.branches)


def expression_table(results: Sequence[ExpressionResult], grid_link: Callable[[str], str] | None = None) -> str:
    lines = [
        "| expression | class | k | tags | valid | accuracy [95% CI] | target | OR branch coverage | s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        text = md_code(r.text)
        if r.grid and grid_link:
            text = f"[{text}]({grid_link(r.grid)})"
        if r.error:
            lines.append(f"| {text} | {r.operator} | {r.n_concepts} | {', '.join(r.tags)} | – | failed: {r.error} | | | {r.seconds:.1f} |")
            continue
        lines.append(
            f"| {text} | {r.operator} | {r.n_concepts} | {', '.join(r.tags)} | {r.valid.value:.2f} "
            f"| {r.accuracy.format()} | {_fmt_target(r)} | {_fmt_branches(r)} | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def summary_table(result: SuiteResult, key: str, title: str) -> str:
    lines = [
        f"| {title} | expressions | pooled accuracy [95% CI] | mean | worst | meeting target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for k, v in result.summary(key).items():
        met, total = v["meeting_target"]
        w = v["worst"]
        lines.append(
            f"| {k} | {v['expressions']} | {v['accuracy'].format()} | {v['mean']:.2f} "
            f"| {md_code(w.text)} {w.accuracy.value:.2f} | {f'{met}/{total}' if total else '–'} |"
        )
    return "\n".join(lines)


def invalid_reasons_table(results: Sequence[ExpressionResult], top: int = 8) -> str:
    """Why samples were judged invalid, pooled over expressions (an invalid sample may have several reasons)."""
    pooled: dict[str, int] = {}
    n_invalid = sum(r.valid.trials - r.valid.successes for r in results if r.valid is not None)
    for r in results:
        for k, v in r.invalid_reasons.items():
            pooled[k] = pooled.get(k, 0) + v
    if not pooled:
        return "No sample was judged invalid." if n_invalid == 0 else ""
    lines = [f"| reason a sample was invalid ({n_invalid} invalid samples) | samples |", "| --- | --- |"]
    for k, v in sorted(pooled.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {k} | {v} |")
    return "\n".join(lines)


def suite_markdown(result: SuiteResult, title: str | None = None, grid_link: Callable[[str], str] | None = None) -> str:
    env = result.environment
    head = title or f"Evaluation of {result.suite_path or 'suite'}"
    parts = [
        f"## {head}",
        "",
        f"{len(result.results)} expressions, n = {result.n} samples each, base seed {result.seed}, "
        f"device {env.get('device', result.device)}, torch {env.get('torch', '?')}, {result.seconds:.0f} s in all. "
        "Accuracy = fraction of samples the judge calls valid *and* whose judged labels satisfy the expression; "
        "95% Wilson intervals. OR branch coverage = fraction of valid samples satisfying each disjunct "
        "(target ≥ 1/(2k)).",
        "",
        expression_table(result.results, grid_link),
        "",
        "By operator:",
        "",
        summary_table(result, "operator", "operator"),
        "",
        "By number of concepts:",
        "",
        summary_table(result, "n_concepts", "concepts"),
    ]
    if any(r.tags for r in result.results):
        parts += ["", "By tag:", "", summary_table(result, "tag", "tag")]
    reasons = invalid_reasons_table(result.results)
    if reasons:
        parts += ["", reasons]
    summary = result.distribution_summary()
    if summary is not None:
        from conceptlang.evaluation import distribution as D

        parts += ["", "Distribution of the samples:", "", D.TABLE_NOTE, "", D.expression_table(result.results), "",
                  D.summary_table([(result.domain or "all", summary)])]
    return "\n".join(parts) + "\n"
