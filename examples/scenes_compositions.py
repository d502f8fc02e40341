#!/usr/bin/env python
"""A handful of scenes compositions with the shipped models: AND, a held-out combination, grounded NOT, OR.

    python examples/scenes_compositions.py    # writes out/examples/scenes_*.png (CPU, < 1 min)
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conceptlang import load_registry  # noqa: E402
from conceptlang.evaluation.run import JudgeCache, evaluate_entry, slug  # noqa: E402
from conceptlang.evaluation.suites import parse_suite  # noqa: E402

SUITE = """
@domain scenes
square & blue & large
circle & blue & large      # held out of training as a combination
circle & ~red              # grounded negation
red | green                # disjunction: each branch should get its share
"""
OUT = Path("out/examples")


def main() -> None:
    registry = load_registry()
    judges = JudgeCache()
    for entry in parse_suite(SUITE).entries:
        t0 = time.perf_counter()
        r = evaluate_entry(entry, registry, judges, n=6, base_seed=0, device="cpu", grid_dir=OUT, grid_samples=6)
        if r.error:
            print(f"{entry.text:28s} failed: {r.error}")
            continue
        branches = "  ".join(f"{b.text}: {b.satisfied_valid.format()}" for b in r.branches)
        print(f"{entry.text:28s} valid&satisfying {r.accuracy.format()}  valid {r.valid.value:.2f}  "
              f"{branches}  → {OUT / (slug(entry.name) + '.png')}  ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
