#!/usr/bin/env python
"""Regenerate docs/results.md and docs/images/results_*.png from ONE run on the shipped models.

    python benchmarks/make_results.py            # the documented run (sample counts sized for 2 CPU cores)
    python benchmarks/make_results.py --quick    # a smoke run with 4 samples per item
    python benchmarks/make_results.py --only objects --merge   # rerun one part, keep the others
    python benchmarks/make_results.py --only suites:faces --suite-chunks 2 --merge   # one suite, two workers

Every number on the page comes from this run: the evaluation suites of both domains (issue 7,
item 1), energy-based concept inference against ground truth and the judge (2), the continual-
learning model set (3), object-level composition (4), and Venn-style figures (5). The page records
the exact command, the device, the torch version, the commit, and the time each part took; every
accuracy carries its 95% Wilson interval. The page is rewritten after every part, marked
INCOMPLETE until the last one finishes, so an interrupted run still leaves honest partial results.
``--merge`` keeps the parts (or single tasks, e.g. ``suites:faces``) that ``--only`` leaves out as
the last complete page recorded them (results.json keeps each task's lines, summary rows and
timings), and the page names the run they come from. ``--suite-chunks K`` splits each suite into K
tasks, so that more workers than suites (a GPU machine's) share them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conceptlang.evaluation import distribution as D  # noqa: E402
from conceptlang.evaluation.comparison import comparison_sheet  # noqa: E402
from conceptlang.evaluation.figures import contact_sheet, render_venn, run_venn  # noqa: E402
from conceptlang.evaluation.results import SuiteResult  # noqa: E402
from conceptlang.evaluation.run import JudgeCache, environment_info, evaluate_suite  # noqa: E402
from conceptlang.evaluation.stats import Proportion  # noqa: E402
from conceptlang.evaluation.suites import load_suite  # noqa: E402
from conceptlang.evaluation.tables import expression_table, invalid_reasons_table, summary_table  # noqa: E402
from conceptlang.io import save_png, write_json, write_text  # noqa: E402

PARTS = ("suites", "inference", "continual", "objects", "venn")
VENNS = (("scenes", ("circle", "red")), ("faces", ("male", "smiling", "black_hair")))


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "models"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + (" (models/ differs from the commit)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _models_root(models: str | None) -> Path:
    from conceptlang.resources import shipped_models_dir

    return Path(models) if models else shipped_models_dir()


MANIFESTS = ("manifest.json", "continual/manifest.json", "objects/manifest.json")


def _manifest_texts(models: str | None, commit: str | None = None) -> dict[str, bytes | None] | None:
    """The three manifests' bytes (None where one is missing): as they are now, or as ``commit`` holds
    them (read with git; None when the models folder lies outside the repository or git cannot)."""
    root = _models_root(models)
    if commit is None:
        texts = {}
        for name in MANIFESTS:
            try:
                texts[name] = (root / name).read_bytes()
            except OSError:
                texts[name] = None
        return texts
    try:
        rel = root.resolve().relative_to(ROOT)
    except ValueError:
        return None
    texts = {}
    for name in MANIFESTS:
        try:
            got = subprocess.run(["git", "show", f"{commit}:{(rel / name).as_posix()}"], cwd=ROOT,
                                 capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        texts[name] = got.stdout if got.returncode == 0 else None
    return texts


def _digest_of_manifests(texts: dict[str, bytes | None]) -> str:
    import hashlib

    h = hashlib.sha256()
    for name in MANIFESTS:
        h.update(texts[name] if texts[name] is not None else b"-")
    return h.hexdigest()[:12]


def _manifest_digest(models: str | None) -> str:
    return _digest_of_manifests(_manifest_texts(models))


def _entries_digest(texts: dict[str, bytes | None], part: str, sub: str) -> str:
    import hashlib
    import json

    raw = texts[{"continual": "continual/manifest.json", "objects": "objects/manifest.json"}.get(part, "manifest.json")]
    try:
        entries = json.loads(raw).get("models", []) if raw is not None else None
    except (ValueError, AttributeError):
        entries = None
    if entries is not None and part not in ("continual", "objects"):
        entries = [e for e in entries if isinstance(e, dict) and e.get("domain") == sub]
    if entries is not None:
        entries = sorted(({k: v for k, v in e.items() if k != "metrics"} for e in entries if isinstance(e, dict)),
                         key=lambda e: str(e.get("name")))
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:12]


def _task_digest(models: str | None, part: str, sub: str) -> str:
    """sha256 (12 hex digits) of the manifest entries one task samples with: the domain's models of
    the main manifest for suites, inference and Venn figures, the continual or object-level set's
    manifest for those parts. ``metrics`` are left out: they record measurements, not settings."""
    return _entries_digest(_manifest_texts(models), part, sub)


def _manifests_of_run(models: str | None, run: dict) -> dict[str, bytes | None] | None:
    """The manifests an earlier run sampled with, for a run that recorded only the digest of all of
    them: its commit's, when they are the ones the run used (their digest equals the recorded one,
    and models/ did not differ from the commit); else None."""
    commit = str(run.get("commit", ""))
    # only a bare hash: not "unknown", not "abc1234 (models/ differs from the commit)", never an option
    if not re.fullmatch(r"[0-9a-f]{4,40}", commit):
        return None
    texts = _manifest_texts(models, commit)
    return texts if texts is not None and _digest_of_manifests(texts) == run.get("manifests") else None


def _rel(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (for the page), else as given."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _model_names(registry) -> str:
    names = sorted(getattr(registry, "handles", None) or {})
    return ": " + ", ".join(f"`{name}`" for name in names) if names else ""


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _progress(r) -> None:
    _log(f"  {r.text}: " + (r.error or f"{r.accuracy.format()} valid {r.valid.value:.2f} ({r.seconds:.0f} s)"))


def _sample_kwargs(args) -> dict:
    return {"steps": args.steps} if args.steps else {}


def _pooled(results, pred) -> Proportion:
    p = Proportion(0, 0)
    for r in results:
        if r.accuracy is not None and pred(r):
            p = p + r.accuracy
    return p


def record_key(part: str, sub: str) -> str:
    """The task's key in results.json's ``parts``: ``suite_faces``, ``inference_scenes``, ``objects``."""
    return f"{'suite' if part == 'suites' else part}_{sub}".rstrip("_")


def task_id(part: str, sub: str) -> str:
    """The name of one task of the page: ``suites:faces``, ``objects``."""
    return f"{part}:{sub}" if sub else part


def _task_order(part: str) -> list[str]:
    """The task ids of ``part`` in page order (scenes before faces)."""
    subs = sorted((s_ for p_, s_ in SCHEDULE if p_ == part), key=lambda s_: ("scenes", "faces", "").index(s_))
    return [task_id(part, s_) for s_ in subs]


def _task_labels(ids) -> list[str]:
    """Task ids for the page: a part whose tasks are all named is named by the part alone."""
    ids, out = set(ids), []
    for p in PARTS:
        mine = _task_order(p)
        if all(t in ids for t in mine):
            out.append(p)
        else:
            out += [t for t in mine if t in ids]
    return out


class Page:
    """The results page, rewritten (atomically) after every task.

    Each task (``suites:scenes``, ``objects``, ...) contributes Markdown lines, summary rows, timings
    and a raw record; the sections, the summary and the timings are rebuilt from the tasks in page
    order whatever order they finish in, and results.json keeps every task's share, so that a later
    ``--merge`` can carry any task over unchanged.
    """

    def __init__(self, docs: Path, args, env: dict, command: str):
        self.docs, self.args, self.env, self.command = docs, args, env, command
        self.t0 = time.perf_counter()
        self.started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.tasks: dict[str, dict] = {}  # task id → {"key", "lines", "headline", "timings"}
        self.run_tasks: list[str] = [task_id(p, s_) for p, s_ in SCHEDULE]  # the tasks this run measures
        self.carried: dict[str, dict] = {}  # --merge: task id → the earlier run it comes from
        self.digests = {task_id(p, s_): _task_digest(args.models, p, s_) for p, s_ in SCHEDULE}  # at the start
        self.record: dict = {"environment": env, "commit": _git_commit(), "started": self.started,
                             "command": command, "manifests": _manifest_digest(args.models), "parts": {}}

    def add(self, tid: str, result: "Part") -> None:
        self.tasks[tid] = {"key": result.key, "lines": list(result.lines), "models": self.digests[tid],
                           "headline": [list(h) for h in result.headline], "timings": dict(result.timings)}
        self.record["parts"][result.key] = result.record

    def _per_part(self, field: str) -> dict[str, list]:
        return {p: [self.tasks[t][field] for t in _task_order(p) if t in self.tasks] for p in PARTS}

    @property
    def sections(self) -> dict[str, list[str]]:
        return {p: SECTION_TITLES[p] + [line for lines in got for line in lines]
                for p, got in self._per_part("lines").items() if got}

    @property
    def headlines(self) -> dict[str, list[tuple[str, str, str]]]:
        return {p: [tuple(h) for rows in got for h in rows] for p, got in self._per_part("headline").items() if got}

    @property
    def part_timings(self) -> dict[str, dict[str, float]]:
        return {p: {k: v for t in got for k, v in t.items()} for p, got in self._per_part("timings").items() if got}

    @property
    def headline(self) -> list[tuple[str, str, str]]:
        return [h for p in PARTS for h in self.headlines.get(p, [])]

    @property
    def timings(self) -> dict[str, float]:
        return {k: v for p in PARTS for k, v in self.part_timings.get(p, {}).items()}

    def carry(self, prior: dict, tids: list[str]) -> None:
        """Take the tasks ``tids`` as the earlier run ``prior`` (a results.json record) recorded them."""
        page = prior["page"]
        origin = prior.get("carried_from") or {}
        this_run = {k: prior[k] for k in ("started", "commit", "manifests", "command")}
        run_manifests: dict[tuple, dict | None] = {}  # (commit, manifests) → that run's manifests, read once
        for t in tids:
            got = page["tasks"][t]
            self.tasks[t] = {"key": got["key"], "lines": list(got["lines"]),
                             "headline": [list(h) for h in got["headline"]], "timings": dict(got["timings"])}
            self.record["parts"][got["key"]] = prior["parts"][got["key"]]
            self.carried[t] = origin.get(t) or origin.get(t.partition(":")[0]) or this_run
            # the task's own models, as its run recorded them or as its run's commit shows them
            own = got.get("models")
            if own is None:
                src = self.carried[t]
                key = (src.get("commit"), src.get("manifests"))
                if key not in run_manifests:
                    run_manifests[key] = _manifests_of_run(self.args.models, src)
                if run_manifests[key] is not None:
                    part, _, sub = t.partition(":")
                    own = _entries_digest(run_manifests[key], part, sub)
            if own is not None:
                self.tasks[t]["models"] = own
        self.record["carried_from"] = self.carried

    def write(self, pending: list[str]) -> None:
        total = time.perf_counter() - self.t0
        a, env = self.args, self.env
        head = ["# Results", ""]
        if a.quick or a.steps or a.limit:
            head += ["> **SMOKE TEST, not results:** run with --quick/--steps/--limit.", ""]
        skipped = [task_id(p, s_) for p, s_ in SCHEDULE
                   if task_id(p, s_) not in self.run_tasks and task_id(p, s_) not in self.carried]
        if skipped:
            head += [f"> Parts not run (`--only`): {', '.join(_task_labels(skipped))}.", ""]
        now = _manifest_digest(a.models)
        origins: list[tuple[dict, list[str]]] = []  # each earlier run and the tasks carried from it
        for t, src in self.carried.items():
            got = next((names for o, names in origins if o == src), None)
            if got is None:
                origins.append((src, [t]))
            else:
                got.append(t)
        for src, names in origins:
            # A task that recorded its own models is checked against them; an older one against every manifest.
            changed = [t for t in names if self.tasks[t].get("models", self.digests[t]) != self.digests[t]
                       or ("models" not in self.tasks[t] and src["manifests"] != now)]
            head += [f"> Carried over unchanged (`--merge`): **{', '.join(_task_labels(names))}**, from the run of "
                     f"{src['started']} (commit {src['commit']}; manifests sha256 {src['manifests']}): `{src['command']}`"
                     + ("" if not changed else " — **the models' manifests have changed since**" if changed == names
                        else f" — **the manifests of the models of {', '.join(_task_labels(changed))} have changed since**")
                     + ".", ""]
        if now != self.record["manifests"]:
            head += [f"> **Warning:** the models' manifests changed during this run (sha256 {self.record['manifests']} "
                     f"at the start, {now} now): parts may have used different sampler settings.", ""]
        if pending:
            head += [f"> **INCOMPLETE:** the run that wrote this page had not finished; parts not yet run: "
                     f"{', '.join(_task_labels(pending))}.", ""]
        order = [t for p in PARTS for t in _task_order(p) if t in self.tasks]
        own = {k: v for t in order if t not in self.carried for k, v in self.tasks[t]["timings"].items()}
        carried_t = {k: v for t in order if t in self.carried for k, v in self.tasks[t]["timings"].items()}
        head += [
            "Generated by one run of",
            "",
            f"    {self.command}",
            "",
            ("Every number and image on this page comes from that run" if not self.carried else
             "Every number and image of the parts it ran comes from that run (the parts carried over: above)")
            + "; rerun the command to regenerate the page "
            "(raw figures, per-sample verdicts included: [`results.json`](results.json)).",
            "",
            f"- started {self.started}; commit {self.record['commit']}; manifests sha256 {self.record['manifests']}",
            f"- device: {env['device']}" + (f" ({env['gpu']})" if "gpu" in env else f", {env['cpu_threads']} CPU threads")
            + f" per worker, {env.get('jobs', 1)} worker process(es); torch {env['torch']}; Python {env['python']}",
            f"- time: {total / 60:.1f} min in all (" + ", ".join(f"{k} {v:.0f} s" for k, v in own.items()) + ")"
            + ("; the carried parts took " + ", ".join(f"{k} {v:.0f} s" for k, v in carried_t.items())
               + " in their run" if self.carried else ""),
            f"- models: `{a.models or 'models/'}` (continual set: `{a.models or 'models'}/continual`, "
            f"object-level set: `{a.models or 'models'}/objects`); base seed {a.seed}",
            "",
            "**How to read it.** Accuracy = the fraction of samples that the judge (`conceptlang.judge`, "
            "trained on the generators' ground truth, separately from the concept models) calls **valid** and whose "
            "judged labels **satisfy** the expression's boolean semantics; a valid scenes sample shows exactly one "
            "object (two for object-level composition). Intervals are 95% Wilson score intervals; "
            + ("n = 256 per suite expression, as issue 6 asks. " if a.n_eval >= 256 else
               "sample counts are small because the whole page must regenerate in well under an hour on a 2-core CPU "
               "(its time is in the header above), "
               "so read the pooled rows. ")
            + "✓/✗ compare point estimates with the targets of issue 6 (single ≥ 0.95; AND of 2/3/4 ≥ "
            "0.90/0.85/0.80; grounded NOT ≥ 0.85; OR ≥ 0.90 with every branch ≥ 1/(2k) of the valid samples) and "
            "issue 7. Sample frames: green = valid and satisfying, red = valid but not satisfying, grey = invalid. "
            "Distribution rows (issue 22) ask whether the samples, together, are distributed like generator data "
            "satisfying the expression: attribute TV, precision and recall in the judge's feature space, "
            "near-duplicates, each beside its floor (the same figure for a second draw of generator data at the same "
            "count); targets are stated for 256 samples per expression.",
            "",
        ]
        if self.headline:
            head += ["## Summary", "", "| what | measured [95% CI] | target |", "| --- | --- | --- |"]
            head += [f"| {w} | {m} | {t} |" for w, m, t in self.headline]
            head += [""]
        body = [line for part in PARTS for line in self.sections.get(part, [])]
        write_text(self.docs / "results.md", "\n".join(head + body) + "\n")
        self.record["timings_s"] = {k: round(v, 1) for k, v in self.timings.items()}
        self.record["total_s"] = round(total, 1)
        self.record["complete"] = not pending
        self.record["page"] = {"sections": self.sections, "headline": self.headlines, "timings": self.part_timings,
                               "tasks": self.tasks}
        write_json(self.docs / "results.json", self.record)


class Part:
    """What one task contributes to the page: Markdown lines, headline rows, raw record, timings."""

    def __init__(self, key: str):
        self.key = key
        self.lines: list[str] = []
        self.headline: list[tuple[str, str, str]] = []
        self.record: dict = {}
        self.timings: dict[str, float] = {}


def _suite(dom: str, args):
    from dataclasses import replace

    suite = load_suite(ROOT / "examples" / f"{dom}_suite.txt")
    suite = replace(suite, path=_rel(Path(suite.path)))  # the record names the file, not this machine's path
    if args.limit:
        suite = replace(suite, entries=suite.entries[: args.limit])
    return suite


def suite_chunk(dom: str, args, chunk: int = 0, chunks: int = 1) -> SuiteResult:
    """Evaluate every ``chunks``-th expression of the domain's suite, from the ``chunk``-th on.

    Each expression's seed comes from its text (``seed_for``), so a suite measured in chunks gives
    the same figures as one measured whole."""
    from dataclasses import replace

    from conceptlang.models.registry import load_registry

    suite = _suite(dom, args)
    part = replace(suite, entries=suite.entries[chunk::chunks])
    _log(f"suite {dom}" + (f" (chunk {chunk + 1} of {chunks})" if chunks > 1 else "")
         + f": {len(part)} expressions × {args.n_eval} samples")
    return evaluate_suite(part, load_registry(args.models), n=args.n_eval, seed=args.seed, device=args.device,
                          judges=JudgeCache(), progress=_progress, keep_images=True,
                          sample_kwargs=_sample_kwargs(args), distribution=True)


def join_chunks(chunks: list[SuiteResult]) -> SuiteResult:
    """One suite's result from its chunks (``suite_chunk(..., k, len(chunks))`` for each k), in suite order."""
    from dataclasses import replace

    k = len(chunks)
    results = [None] * sum(len(c.results) for c in chunks)
    for i, c in enumerate(chunks):
        results[i::k] = c.results
    return replace(chunks[0], results=results, seconds=sum(c.seconds for c in chunks))


def task_suite(dom: str, args, images: Path) -> Part:
    return suite_part(dom, args, images, suite_chunk(dom, args))


def suite_part(dom: str, args, images: Path, res: SuiteResult, chunks: int = 1) -> Part:
    """The suite's share of the page (tables, summary rows, sample sheets) from its measured result."""
    part = Part(record_key("suites", dom))
    t0 = time.perf_counter()
    sheet = f"results_{dom}_suite.png"
    save_png(images / sheet, contact_sheet(res.results, show=12,
                                           title=f"{dom}: the first {min(12, args.n_eval)} of {args.n_eval} samples per expression"))
    compare = f"results_{dom}_compare.png"
    save_png(images / compare, comparison_sheet(res.results, show=8, base_seed=args.seed,
                                                title=f"{dom}: samples beside generator data satisfying the expression"))
    took = part.timings[f"suite {dom}"] = res.seconds + time.perf_counter() - t0
    part.record = res.to_json()
    targets = {"single": "≥ 0.95", "and": "≥ 0.80–0.90 (by k)", "not": "≥ 0.85", "or": "≥ 0.90"}
    for cls, label in (("single", "single concepts"), ("and", "AND"), ("not", "grounded NOT"), ("or", "OR"),
                       ("nested", "nested")):
        p = _pooled(res.results, lambda r, c=cls: r.operator == c)
        if p.trials:
            part.headline.append((f"{dom}: {label} (pooled)", p.format(), targets.get(cls, "–")))
    held = _pooled(res.results, lambda r: "held-out" in r.tags)
    if held.trials:
        part.headline.append((f"{dom}: held-out combinations (pooled)", held.format(), "≥ 0.85 (AND of 3)"))
    part.headline += _distribution_headline(dom, res.results)
    part.lines = [
        f"### {dom.capitalize()} (`examples/{dom}_suite.txt`)",
        "",
        f"{len(res.results)} expressions × n = {args.n_eval} samples, {took:.0f} s"
        + (f" (in {chunks} chunks of the suite, run side by side: the seconds are their sum)." if chunks > 1 else "."),
        "",
        expression_table(res.results),
        "",
        "By operator class (pooled over expressions):",
        "",
        summary_table(res, "operator", "operator"),
        "",
        "By number of concepts:",
        "",
        summary_table(res, "n_concepts", "concepts"),
        "",
        "By suite section (`held-out`: shape × colour × size combinations the training split never contains):",
        "",
        summary_table(res, "tag", "section"),
        "",
        invalid_reasons_table(res.results),
        "",
        f"![{dom} suite samples](images/{sheet})",
        "",
        *_distribution_lines(dom, res.results, compare),
    ]
    return part


def _distribution_headline(label: str, results) -> list[tuple[str, str, str]]:
    """Headline rows of the distribution figures (floors in parentheses)."""
    p = D.results_pooled(results)
    if not p["expressions"]:
        return []
    t, w = D.TARGETS, p["tv_worst"]
    rows = [(f"{label}: attribute TV, pooled (floor)", D._pair(p["tv_pooled"], p["tv_pooled_floor"]), f"≤ {t['tv_pooled']:.2f}")]
    if w is not None:
        rows.append((f"{label}: attribute TV, worst (floor)",
                     f"{D._pair(w['tv'], w['floor'])}: `{w['expression'].replace('|', chr(92) + '|')}`, {w['family']}",
                     f"≤ {t['tv_worst']:.2f}"))
    rows += [(f"{label}: precision (floor)", D._pair(p["precision"], p["precision_floor"], 3), f"≥ {t['precision']:.2f}"),
             (f"{label}: recall (floor)", D._pair(p["recall"], p["recall_floor"], 3), f"≥ {t['recall']:.2f}"),
             (f"{label}: near-duplicates (floor)", D._pair(p["near_dup"], p["near_dup_floor"], 3), f"≤ {t['near_dup']:.2f}")]
    return rows


def _distribution_lines(label: str, results, compare: str) -> list[str]:
    """The distribution part of a suite's section: per-expression table, pooled row, comparison sheet."""
    p = D.results_pooled(results)
    if not p["expressions"]:
        return []
    return [
        "Distribution of the samples (docs/experiments.md, \"Distribution metrics\"). " + D.TABLE_NOTE,
        "",
        D.expression_table(results),
        "",
        D.summary_table([(label, p)]),
        "",
        f"![{label}: samples beside generator data](images/{compare})",
        "",
    ]


def task_inference(dom: str, args, images: Path) -> Part:
    from conceptlang.inference.accuracy import DISCRETE_TARGET, POSITION_TARGET, measure_inference
    from conceptlang.judge.load import load_judge
    from conceptlang.models.registry import energy_settings, load_registry

    part = Part(record_key("inference", dom))
    t0 = time.perf_counter()
    _log(f"inference {dom}: {args.n_infer} generated images")
    registry = load_registry(args.models)
    acc = measure_inference(registry, dom, n=args.n_infer, seed=args.seed + 777,
                            device=environment_info(args.device)["device"], judge=load_judge(dom),
                            coarse=args.infer_grid, refine_rounds=args.infer_refine)
    part.timings[f"inference {dom}"] = time.perf_counter() - t0
    part.record = acc.to_json()
    for fam, p in acc.energy.items():
        part.headline.append((f"inference {dom}: {fam}", p.format(), f"≥ {DISCRETE_TARGET}"))
    for fam, errs in acc.position_errors.items():
        s = acc.position_summary(errs)
        if s["mean"] is not None:
            part.headline.append((f"inference {dom}: {fam} mean error", f"{s['mean']:.3f}", f"≤ {POSITION_TARGET}"))
    prior = registry.prior(dom)[0]
    cal = (getattr(prior, "entry", {}).get("inference") or {}).get("calibration")
    readout = (f"calibrated readout for {', '.join(cal.get('families', {}))} (fitted on {cal.get('n')} images, seed {cal.get('seed')})"
               if cal else "plain energies (no calibrated readout in the manifest)")
    if getattr(prior, "inference_draws", None) is not None:
        readout += (f"; discrete families ranked with {prior.inference_draws} noise draws per σ level "
                    f"(position search: {energy_settings(prior.entry)['draws']})")
    part.lines = [
        f"### {dom.capitalize()}",
        "",
        f"{acc.n} images (`{acc.split}` split, seed {acc.seed}); {readout}; {acc.seconds_per_image:.2f} s per image for "
        f"energy inference, {acc.judge_seconds_per_image * 1000:.1f} ms per image for the judge.",
        "",
        acc.markdown_table(),
        "",
    ]
    return part


def task_continual(_: str, args, images: Path) -> Part:
    from conceptlang.evaluation.continual import continual_models_dir, continual_suite
    from conceptlang.models.registry import load_registry

    part = Part("continual")
    cdir = Path(args.models) / "continual" if args.models else continual_models_dir()
    t0 = time.perf_counter()
    if not (cdir / "manifest.json").exists():
        part.lines = [f"**Not measured:** there is no continual model set at `{cdir}`.", ""]
        part.record = {"skipped": f"no manifest at {cdir}"}
        return part
    _log(f"continual: {cdir}")
    res = evaluate_suite(continual_suite(), load_registry(cdir), n=args.n_continual, seed=args.seed,
                         device=args.device, judges=JudgeCache(), keep_images=True, progress=_progress,
                         sample_kwargs=_sample_kwargs(args), distribution=True)
    save_png(images / "results_continual_compare.png",
             comparison_sheet(res.results, show=8, base_seed=args.seed,
                              title="continual: samples beside generator data satisfying the expression"))
    save_png(images / "results_continual.png", contact_sheet(res.results, show=12, title="continual-learning model set"))
    took = part.timings["continual"] = time.perf_counter() - t0
    part.record = res.to_json()
    triple = _pooled(res.results, lambda r: r.n_concepts == 3)
    part.headline.append(("continual: position & shape & color (pooled)", triple.format(), "≥ 0.80"))
    part.headline += _distribution_headline("continual", res.results)
    part.lines = [
        "Position model trained on set 1 only (square, purple, large; position varies), shape on set 2 only "
        "(purple, large), colour on set 3 only (square, large). No set contains any of these combinations: every "
        f"shape is non-square and every colour non-purple. n = {args.n_continual}, {took:.0f} s. "
        "Target ≥ 0.80 for position & shape & color.",
        "",
        expression_table(res.results),
        "",
        summary_table(res, "tag", "kind"),
        "",
        invalid_reasons_table(res.results),
        "",
        "![continual samples](images/results_continual.png)",
        "",
        *_distribution_lines("continual", res.results, "results_continual_compare.png"),
    ]
    return part


def task_objects(_: str, args, images: Path) -> Part:
    from conceptlang.evaluation.objects import DEFAULT_LAYOUTS, evaluate_layout, markdown_table, objects_registry

    part = Part("objects")
    t0 = time.perf_counter()
    (registry, where), judges = objects_registry(args.models), JudgeCache()
    _log(f"objects: {where}")
    layouts = []
    for k, targets in enumerate(DEFAULT_LAYOUTS):
        r = evaluate_layout(targets, registry, n=args.n_objects, seed=args.seed, device=args.device,
                            judges=judges, grid_path=images / f"results_objects_{k}.png",
                            sample_kwargs=_sample_kwargs(args), distribution=True, keep_images=True)
        _log(f"  {r.expression}: {r.accuracy.format()} ({r.seconds:.0f} s)")
        layouts.append(r)
    save_png(images / "results_objects_compare.png",
             comparison_sheet(layouts, show=8, base_seed=args.seed,
                              title="object-level: samples beside generator two-object scenes at the targets"))
    took = part.timings["objects"] = time.perf_counter() - t0
    part.record = {"layouts": [dict(r.to_json(), grid=_rel(Path(r.grid)) if r.grid else r.grid) for r in layouts]}
    pooled = Proportion(0, 0)
    for r in layouts:
        pooled = pooled + r.accuracy
    part.headline.append(("object-level: two objects at the two targets (pooled)", pooled.format(), "≥ 0.80"))
    part.headline += _distribution_headline("object-level", layouts)
    part.lines = [
        f"One position model conditioned on two positions at once (models `{_rel(where)}`{_model_names(registry)}); "
        f"n = {args.n_objects} per layout, {took:.0f} s. "
        "Success = judged valid as a two-object scene, exactly two objects, each target within 0.1 of a different "
        "object's centre. Target ≥ 0.80.",
        "",
        markdown_table(layouts),
        "",
        " ".join(f"![{r.expression}](images/{Path(r.grid).name})" for r in layouts if r.grid),
        "",
        "Distribution per object: shape, colour and size of each of the two objects against generator two-object "
        "scenes (`two_objects` split) whose objects sit at the targets.",
        "",
        *_distribution_lines("object-level", layouts, "results_objects_compare.png"),
    ]
    return part


def task_venn(dom: str, args, images: Path) -> Part:
    from conceptlang.models.registry import load_registry

    concepts = dict(VENNS)[dom]
    part = Part(record_key("venn", dom))
    t0 = time.perf_counter()
    _log(f"venn {dom}: {concepts}")
    venn = run_venn(list(concepts), load_registry(args.models), n=args.n_venn, seed=args.seed, device=args.device,
                    judges=JudgeCache(), sample_kwargs=_sample_kwargs(args))
    for r in venn.results:
        _progress(r)
    name = f"results_venn_{dom}.png"
    save_png(images / name, render_venn(venn, show=min(16, args.n_venn)))
    took = part.timings[f"venn {dom}"] = time.perf_counter() - t0
    part.record = venn.to_json()
    part.lines = [
        f"### {dom.capitalize()}: {', '.join(concepts)}",
        "",
        f"n = {args.n_venn} per region, {took:.0f} s. "
        "(`conceptlang figure venn " + " ".join(concepts) + " -o venn.png` draws the same figure.)",
        "",
        venn.markdown_table(),
        "",
        f"![venn {dom}](images/{name})",
        "",
    ]
    return part


TASKS = {"suites": task_suite, "inference": task_inference, "continual": task_continual,
         "objects": task_objects, "venn": task_venn}
SECTION_TITLES = {
    "suites": ["## 1. Evaluation suites", ""],
    "inference": ["## 2. Concept inference", "",
                  "Each family's values ranked by the model's energy (implicit models: the seeded denoising loss), "
                  "read out with the model's calibrated noise-level weights where its manifest entry has them "
                  "(`conceptlang calibrate`, fitted on images of another seed; docs/experiments.md); "
                  "yes/no attributes decided against the known-absent condition (E(x | c) < E(x | not c); "
                  "the unconditional model for models without one); "
                  "position by minimising the energy over a grid refined around the best point; then, where a "
                  "position was found, each family of two or more values ranked again under the rest of the "
                  "inferred description (E(x | shape, colour, size = v, position)). Images come from "
                  "the generator, so the truth is known; the judge reads the same images for comparison.", ""],
    "continual": ["## 3. Continual learning", ""],
    "objects": ["## 4. Object-level composition", ""],
    "venn": ["## 5. Nested composition: Venn regions", ""],
}
# (part, sub-task), biggest first so two workers finish together.
SCHEDULE = (("suites", "scenes"), ("suites", "faces"), ("inference", "scenes"), ("venn", "faces"),
            ("continual", ""), ("venn", "scenes"), ("objects", ""), ("inference", "faces"))


def start_method(device: str) -> str:
    """How worker processes start: fork is quicker, but a CUDA context (environment_info asked the GPU
    its name) cannot cross a fork, so workers that sample on CUDA are spawned (they import this
    script afresh, so they see none of the parent's run-time patches)."""
    return "spawn" if str(device).startswith("cuda") else "fork"


def _failed(part: str, sub: str, err: BaseException, trace: str) -> Part:
    _log(f"!! {part} {sub} failed: {type(err).__name__}: {err}")
    failed = Part(record_key(part, sub))
    failed.lines = [f"**{part} {sub}: failed** with `{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}`", ""]
    failed.record = {"failed": f"{type(err).__name__}: {err}", "traceback": trace}
    return failed


def _run_task(part: str, sub: str, chunk: int | None, args, images: Path):
    """One work item in a worker: a whole task (→ its Part) or one chunk of a suite (→ its SuiteResult)."""
    import traceback

    import torch

    torch.set_num_threads(args.threads or 1)
    try:
        if chunk is not None:
            return part, sub, chunk, suite_chunk(sub, args, chunk, args.suite_chunks)
        return part, sub, chunk, TASKS[part](sub, args, images)
    except Exception as err:  # noqa: BLE001 - one failed part must not lose the others' results
        return part, sub, chunk, _failed(part, sub, err, traceback.format_exc())


def _prior_page(docs: Path, ap: argparse.ArgumentParser) -> dict:
    """The last page's record, for --merge: complete, not a smoke test, with its parts' sections."""
    import json

    path = docs / "results.json"
    try:
        prior = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        ap.error(f"--merge needs the last page's record {path}: {err}")
    page = prior.get("page") if isinstance(prior, dict) else None
    tasks = page.get("tasks") if isinstance(page, dict) else None
    if not isinstance(tasks, dict) or not prior.get("complete") or set(tasks) != {task_id(p, s_) for p, s_ in SCHEDULE}:
        ap.error(f"--merge: {path} is not the record of a complete page that keeps each task's share "
                 "(pages written before the per-task record do not); regenerate the whole page once")
    if any(flag in str(prior.get("command", "")).split() for flag in ("--quick", "--steps", "--limit")):
        ap.error(f"--merge: {path} records a smoke test ({prior['command']}), not results")
    return prior


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-eval", type=int, default=40, help="samples per suite expression")
    ap.add_argument("--n-infer", type=int, default=24, help="generated images per domain for inference accuracy")
    ap.add_argument("--n-continual", type=int, default=64, help="samples per continual-learning expression")
    ap.add_argument("--n-objects", type=int, default=48, help="samples per object-level layout")
    ap.add_argument("--n-venn", type=int, default=6, help="samples per Venn region")
    ap.add_argument("--infer-grid", type=int, default=12, help="coarse position grid per axis for inference")
    ap.add_argument("--infer-refine", type=int, default=3, help="local refinement rounds for position inference")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (tasks run in parallel, one per worker)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads per worker (default 1: with other jobs on the CPU, more threads per "
                         "process are far slower, see docs/experiments.md)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", default=None, help="models directory (default: the shipped models/)")
    ap.add_argument("--docs", default=str(ROOT / "docs"), help="where results.md, results.json and images/ go")
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma-separated parts to run, of {', '.join(PARTS)}, or single tasks of a part by domain: "
                         "suites:faces, inference:scenes, venn:faces")
    ap.add_argument("--suite-chunks", type=int, default=1,
                    help="measure each suite as this many chunks of its expressions, each a task of its own, so that "
                         "more workers than suites share the suites (same figures: seeds come from the expressions)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the parts --only leaves out as the last complete page (DOCS/results.json) has them")
    ap.add_argument("--quick", action="store_true", help="4 samples per item: a smoke test, not results")
    ap.add_argument("--steps", type=int, default=None,
                    help="override the models' tuned number of sampler steps (smoke tests; the page says so)")
    ap.add_argument("--limit", type=int, default=None, help="only the first K expressions of each suite (smoke tests)")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_eval = args.n_venn = args.n_infer = args.n_objects = args.n_continual = 4
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    known = {task_id(p, s_) for p, s_ in SCHEDULE}
    unknown = wanted - set(PARTS) - known
    if unknown:
        ap.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)} "
                 f"or one task of a part: {', '.join(sorted(t for t in known if ':' in t))}")
    if args.suite_chunks < 1:
        ap.error(f"--suite-chunks must be at least 1, not {args.suite_chunks}")
    todo = [(p, s_) for p, s_ in SCHEDULE if p in wanted or task_id(p, s_) in wanted]
    prior = _prior_page(Path(args.docs), ap) if args.merge else None

    import torch

    torch.set_num_threads(args.threads or 1)
    command = "python benchmarks/make_results.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                     " " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    docs = Path(args.docs)
    images = docs / "images"
    images.mkdir(parents=True, exist_ok=True)
    env = environment_info(args.device)
    env["jobs"] = args.jobs
    page = Page(docs, args, env, command)
    page.run_tasks = [task_id(p, s_) for p, s_ in todo]
    if prior is not None:
        page.carry(prior, [task_id(p, s_) for p, s_ in SCHEDULE if (p, s_) not in todo])
    pending = list(page.run_tasks)
    page.write(pending)
    chunked = args.suite_chunks > 1
    work = [(p, s_, k) for p, s_ in todo
            for k in (range(args.suite_chunks) if chunked and p == "suites" else [None])]
    chunks: dict[str, dict[int, object]] = {}  # suite domain → its chunks measured so far

    def collect(part: str, sub: str, chunk: int | None, result) -> None:
        if chunk is not None:  # one chunk of a suite: the suite's share waits for all of them
            got = chunks.setdefault(sub, {})
            got[chunk] = result
            if len(got) < args.suite_chunks:
                return
            bad = next((r for r in got.values() if isinstance(r, Part)), None)
            if bad is None:
                try:
                    result = suite_part(sub, args, images, join_chunks([got[k] for k in range(args.suite_chunks)]),
                                        chunks=args.suite_chunks)
                except Exception as err:  # noqa: BLE001 - as in a worker
                    import traceback

                    result = _failed(part, sub, err, traceback.format_exc())
            else:
                result = bad
        tid = task_id(part, sub)
        page.add(tid, result)
        pending.remove(tid)
        page.write(pending)
        _log(f"== done: {part} {sub}".rstrip())

    if args.jobs <= 1:
        for part, sub, chunk in work:
            collect(*_run_task(part, sub, chunk, args, images))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context(start_method(env["device"]))) as pool:
            futures = [pool.submit(_run_task, part, sub, chunk, args, images) for part, sub, chunk in work]
            for fut in as_completed(futures):
                collect(*fut.result())
    skipped = [p for p in PARTS if not any(p_ == p for p_, _ in todo)]
    if skipped:
        _log(f"parts not run (by --only): {', '.join(skipped)}" + (", carried over from the last page" if prior else ""))
    _log(f"wrote {docs / 'results.md'} in {(time.perf_counter() - page.t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
