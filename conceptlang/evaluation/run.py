"""Running an evaluation: compile, sample and judge every expression of a suite.

For every expression the evaluator samples ``n`` images from the compiled energy graph with a fixed
seed, runs the domain's judge, and counts a sample as a success when the judge calls it valid
*and* its judged labels satisfy the expression (:mod:`conceptlang.evaluation.scoring`); the
records are :mod:`conceptlang.evaluation.results`, the tables :mod:`conceptlang.evaluation.tables`.

Seeds are derived from the base seed and the expression text (not its position in the suite), so
adding an entry to a suite does not change the numbers of the others.
"""

from __future__ import annotations

import re
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

from conceptlang.errors import ConceptLangError
from conceptlang.evaluation.results import ExpressionResult, SuiteResult
from conceptlang.evaluation.scoring import expected_objects, score_samples
from conceptlang.evaluation.suites import Suite, SuiteEntry


def seed_for(text: str, base_seed: int, multiplier: int = 1_000_003, prefix: str = "") -> int:
    """A per-expression seed that depends only on the base seed and the expression text (``prefix``
    and ``multiplier`` make other streams, e.g. reference draws, apart from the sample seeds)."""
    return (int(base_seed) * multiplier + zlib.crc32((prefix + text.strip()).encode("utf-8"))) % (2**31 - 1)


def slug(text: str, max_len: int = 60) -> str:
    """A file-name-safe rendering of an expression (``(male & smiling) | ~black_hair`` → ``male_and_smiling_or_not_black_hair``)."""
    s = text.replace("&", " and ").replace("|", " or ").replace("~", " not ")
    s = re.sub(r"[^A-Za-z0-9.]+", "_", s).strip("_").replace(".", "-")
    s = s[:max_len].rstrip("_")
    return s or "expr"


def _drawn_branches(sample_result, graph) -> dict[str, int] | None:
    """How many chains drew each branch of the expression's OR(s) as written (the graph's
    :meth:`~conceptlang.compiler.graph.EnergyGraph.branch_groups`); None without one."""
    branches = getattr(sample_result, "branches", None)
    if branches is None or not hasattr(graph, "branch_groups"):
        return None
    groups = graph.branch_groups(branches)
    return None if groups is None else dict(groups)


class JudgeCache:
    """One judge per domain, loaded on first use."""

    def __init__(self, loader: Callable[[str], Any] | None = None):
        self._loader = loader
        self._judges: dict[str, Any] = {}

    def __call__(self, domain: str):
        if domain not in self._judges:
            loader = self._loader
            if loader is None:
                from conceptlang.judge.load import load_judge

                loader = load_judge
            self._judges[domain] = loader(domain)
        return self._judges[domain]


def evaluate_entry(
    entry: SuiteEntry,
    registry,
    judges: JudgeCache,
    n: int = 256,
    base_seed: int = 0,
    device: str = "auto",
    grid_dir: str | Path | None = None,
    grid_samples: int = 64,
    sample_kwargs: dict | None = None,
    keep_going: bool = True,
    keep_images: bool = False,
    distribution: bool = False,
) -> ExpressionResult:
    """Sample, judge and score one suite entry. With ``keep_going`` a failure is recorded, not raised.

    With ``distribution`` the samples are also compared with generator images satisfying the
    expression (:func:`conceptlang.evaluation.distribution.distribution_metrics`).
    """
    from conceptlang.compiler import compile as compile_expr
    from conceptlang.data import to_uint8
    from conceptlang.evaluation.grids import framed_grid
    from conceptlang.io import save_png
    from conceptlang.sampling import sample

    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    seed = seed_for(entry.text, base_seed)
    result = ExpressionResult(
        name=entry.name,
        text=entry.text,
        operator=entry.operator,
        n_concepts=entry.n_concepts,
        tags=entry.tags,
        domain=None,
        seed=seed,
        n=n,
    )
    t0 = time.perf_counter()
    try:
        graph = compile_expr(entry.expr, registry)
        result.domain = getattr(graph, "domain", None)
        t1 = time.perf_counter()
        sampled = sample(graph, n, seed=seed, device=device, **(sample_kwargs or {}))
        result.sample_seconds = time.perf_counter() - t1
        result.settings = dict(getattr(sampled, "settings", {}) or {})
        result.drawn_branches = _drawn_branches(sampled, graph)
        images = to_uint8(sampled.images)  # (N, H, W, 3) uint8
        judge = judges(result.domain)
        valid, satisfied = score_samples(entry.expr, images, judge, result, registry)
        if distribution:
            from conceptlang.evaluation.distribution import distribution_metrics, reference_seed

            result.distribution = distribution_metrics(
                entry.expr, result.domain, images, result.labels, valid & satisfied, judge,
                reference_seed(entry.text, base_seed), n_objects=expected_objects(entry.expr, result.domain))
        if keep_images:
            result.images = images
        if grid_dir is not None:
            path = Path(grid_dir) / f"{slug(entry.name)}.png"
            m = min(grid_samples, n)
            save_png(path, framed_grid(images[:m], satisfied[:m], valid[:m], ncols=min(8, m)))
            result.grid = str(path)
    except ConceptLangError as err:
        if not keep_going:
            raise
        result.error = f"{type(err).__name__}: {err}"
    result.seconds = time.perf_counter() - t0
    return result


def environment_info(device: str = "auto") -> dict:
    """Device and library versions, recorded with every table."""
    import platform

    import torch

    resolved = device
    if device == "auto":
        resolved = "cuda" if torch.cuda.is_available() else "cpu"
    info = {
        "device": resolved,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }
    if resolved.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def check_entries(labelled: Iterable[tuple[str, SuiteEntry]], registry) -> None:
    """Compile every ``(label, entry)`` against ``registry`` before anything is sampled. An error in
    an entry's text that only the registry can find (an unknown or ambiguous name, arguments that do
    not fit a concept, concepts of different domains) is raised at once as a :class:`SuiteError`
    prefixed with the entry's label; any other compile failure is left to the entry's own measurement."""
    import warnings

    from conceptlang.compiler import compile as compile_expr
    from conceptlang.errors import ExpressionError, NameResolutionError
    from conceptlang.evaluation.suites import SuiteError

    for label, entry in labelled:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unsatisfiable and the like: the measurement reports them
                compile_expr(entry.expr, registry)
        except (NameResolutionError, ExpressionError) as err:
            raise SuiteError(f"{label}: {err}") from None
        except ConceptLangError:
            pass


def evaluate_suite(
    suite: Suite,
    registry,
    n: int = 256,
    seed: int = 0,
    device: str = "auto",
    grid_dir: str | Path | None = None,
    judges: JudgeCache | None = None,
    sample_kwargs: dict | None = None,
    progress: Callable[[ExpressionResult], None] | None = None,
    keep_going: bool = True,
    keep_images: bool = False,
    distribution: bool = False,
) -> SuiteResult:
    judges = judges or JudgeCache()
    t0 = time.perf_counter()
    results = []
    for entry in suite.entries:
        r = evaluate_entry(
            entry, registry, judges, n=n, base_seed=seed, device=device, grid_dir=grid_dir,
            sample_kwargs=sample_kwargs, keep_going=keep_going, keep_images=keep_images,
            distribution=distribution,
        )
        results.append(r)
        if progress is not None:
            progress(r)
    return SuiteResult(
        results=results,
        n=n,
        seed=seed,
        device=device,
        seconds=time.perf_counter() - t0,
        suite_path=suite.path,
        domain=suite.domain,
        environment=environment_info(device),
    )
