"""Parse time versus input size: shows that parsing (and printing) grows linearly.

    python benchmarks/bench_parse.py                 # table + benchmarks/results/parse.json
    python benchmarks/bench_parse.py --sizes 1000 10000 --repeats 5

For each input shape and size the best of ``--repeats`` runs is kept (the minimum is the least
disturbed by other processes). Times are CPU seconds of this process (``time.process_time``),
which on a shared machine measure the work done far better than wall-clock time; the wall-clock
parse time is recorded beside them. The growth exponent k is the least-squares slope of
log(time) against log(size): k = 1 is linear, k = 2 quadratic. It is reported over all sizes
and over the three largest (small inputs fit in the CPU caches and run faster per unit, which
pulls the all-sizes exponent above 1 without anything quadratic going on).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conceptlang.io import write_json  # noqa: E402
from conceptlang.syntax import evaluate, parse, unparse  # noqa: E402

SHAPES: dict[str, tuple[str, Callable[[int], str]]] = {
    "and-chain": ("n concepts joined by &", lambda n: " & ".join(f"c{i}" for i in range(n))),
    "mixed": (
        "n concepts in (a & ~b) | 2.5 * c groups",
        lambda n: " | ".join(f"(c{i} & ~d{i}) | 2.5 * e{i}" for i in range(n // 3)),
    ),
    "nested-parens": ("n levels of ( ... & x)", lambda n: "(" * n + "a" + " & b)" * n),
    "nested-not": ("n levels of ~", lambda n: "~" * n + "a"),
}


def best_time(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.process_time) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def _load() -> float | None:
    # Recorded because the numbers are only comparable on an otherwise idle machine.
    try:
        import os

        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 3_000, 10_000, 30_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "parse.json")
    args = parser.parse_args()

    parse("warm & up")  # load the grammar outside the timings
    rows = []
    print("CPU seconds, best of", args.repeats)
    print(f"{'shape':<14} {'size':>8} {'chars':>9} {'parse s':>9} {'us/unit':>8} {'unparse s':>10} {'evaluate s':>11}")
    for shape, (_description, make) in SHAPES.items():
        for n in args.sizes:
            text = make(n)
            program = parse(text)
            labels = {k: True for k in {f"{p}{i}" for p in "cde" for i in range(n)} | {"a", "b"}}
            t_parse = best_time(lambda: parse(text), args.repeats)
            t_parse_wall = best_time(lambda: parse(text), 1, time.perf_counter)
            t_unparse = best_time(lambda: unparse(program), args.repeats)
            t_eval = best_time(lambda: evaluate(program, labels), args.repeats)
            rows.append({"shape": shape, "size": n, "chars": len(text), "parse_s": t_parse, "parse_wall_s": t_parse_wall,
                         "unparse_s": t_unparse, "evaluate_s": t_eval})
            print(f"{shape:<14} {n:>8} {len(text):>9} {t_parse:>9.4f} {1e6 * t_parse / n:>8.2f} "
                  f"{t_unparse:>10.4f} {t_eval:>11.4f}")
    print()
    exponents = {}
    for shape, (description, _) in SHAPES.items():
        sel = [r for r in rows if r["shape"] == shape]
        large = sel[-3:]
        exponents[shape] = {"description": description}
        for key in ("parse", "unparse", "evaluate"):
            exponents[shape][key] = slope([r["size"] for r in sel], [r[f"{key}_s"] for r in sel])
            exponents[shape][f"{key}_largest3"] = slope([r["size"] for r in large], [r[f"{key}_s"] for r in large])
        e = exponents[shape]
        print(f"growth exponent {shape:<14} parse {e['parse']:.2f} ({e['parse_largest3']:.2f})  "
              f"unparse {e['unparse']:.2f} ({e['unparse_largest3']:.2f})  "
              f"evaluate {e['evaluate']:.2f} ({e['evaluate_largest3']:.2f})   "
              "all sizes (three largest); 1 = linear")
    write_json(args.out, {
        "benchmark": "parse time versus input size",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeats": args.repeats,
        "cpu_load_average_1min": _load(),
        "statistic": "minimum CPU seconds (time.process_time) over repeats; parse_wall_s: one wall-clock run",
        "rows": rows,
        "growth_exponents": exponents,
    })
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
