"""Benchmark: data generation speed per domain and split on one CPU core.

    python benchmarks/bench_data.py [--n 50000] [--quick]

Prints a table and writes benchmarks/results/data.json. Target (issue 5): 50,000 32×32 scenes
in under 60 s on one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

# One core: the target is stated per core, and BLAS threads would only blur the figure.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conceptlang.data import DOMAIN_NAMES, generate, splits  # noqa: E402
from conceptlang.io import write_json  # noqa: E402

TARGET_S = 60.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    rows = []
    for dom in DOMAIN_NAMES:
        try:
            split_names = list(splits(dom))
        except Exception as err:  # a domain not written yet is reported, not fatal
            print(f"skipping {dom}: {err}")
            continue
        for split in split_names:
            best = float("inf")
            for r in range(args.repeats):
                t0 = time.perf_counter()
                generate(dom, args.n, seed=r, split=split, image_size=args.size, as_arrays=True)
                best = min(best, time.perf_counter() - t0)
            t0 = time.perf_counter()
            generate(dom, min(args.n, 5000), seed=0, split=split, image_size=args.size)
            dicts_s = (time.perf_counter() - t0) * args.n / min(args.n, 5000)
            rows.append(
                {
                    "domain": dom,
                    "split": split,
                    "n": args.n,
                    "image_size": args.size,
                    "seconds_arrays": round(best, 3),
                    "images_per_s": round(args.n / best),
                    "seconds_with_label_dicts_est": round(dicts_s, 3),
                    "meets_target": best < TARGET_S,
                }
            )
            print(f"{dom:7s} {split:12s} n={args.n} {args.size}px  {best:7.2f} s  "
                  f"{args.n / best:9.0f} img/s  (with label dicts ≈{dicts_s:6.2f} s)")
    # The CLI path: `conceptlang data` also encodes one PNG and one JSON line per image.
    import tempfile

    from conceptlang.cli.data_cmds import write_dataset

    cli_rows = []
    n_cli = min(args.n, 5000)
    for dom in DOMAIN_NAMES:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_dataset(dom, n_cli, Path(tmp) / "ds", image_size=args.size, progress=False)
            dt = time.perf_counter() - t0
        cli_rows.append({"domain": dom, "n": n_cli, "seconds": round(dt, 2), "images_per_s": round(n_cli / dt)})
        print(f"conceptlang data {dom:7s} n={n_cli}  {dt:6.2f} s  {n_cli / dt:7.0f} img/s (PNG + JSONL)")
    out = Path(__file__).resolve().parent / "results" / "data.json"
    # The load average says how much the pinned core was shared: figures scale with it.
    write_json(out, {"target_seconds": TARGET_S, "cores": 1, "machine": platform.processor() or platform.machine(),
                     "load_average_1min_at_end": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
                     "rows": rows, "cli_write": cli_rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
