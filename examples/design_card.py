#!/usr/bin/env python
"""The design-card expression end to end: parse → compile → sample → judge, with the shipped models.

    python examples/design_card.py            # writes out/examples/design_card.png (CPU, < 1 min)

Samples 16 faces of ``(male & smiling) | ~black_hair``, asks the faces judge which are valid and
which satisfy the expression, and prints which branch each sample landed in.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from conceptlang import compile, evaluate, load_registry, parse, sample, unparse  # noqa: E402
from conceptlang.data import to_uint8  # noqa: E402
from conceptlang.evaluation.grids import framed_grid  # noqa: E402
from conceptlang.io import save_png  # noqa: E402
from conceptlang.judge.load import load_judge  # noqa: E402

TEXT = "(male & smiling) | ~black_hair"
OUT = Path("out/examples/design_card.png")


def main() -> None:
    t0 = time.perf_counter()
    program = parse(TEXT)
    print("parsed:", unparse(program))
    registry = load_registry()  # the shipped models/
    graph = compile(program, registry)
    print(graph.explain())
    result = sample(graph, 16, seed=0, device="cpu")
    images = to_uint8(result.images)  # (16, 32, 32, 3) uint8
    judge = load_judge("faces")
    valid = judge.valid(images)
    labels = judge.labels(images)
    sat = np.array([evaluate(program.body, lab) for lab in labels])
    left = sum(evaluate(parse("male & smiling").body, lab) for lab, v in zip(labels, valid) if v)
    right = sum(evaluate(parse("~black_hair").body, lab) for lab, v in zip(labels, valid) if v)
    print(f"valid {valid.sum()}/16, valid and satisfying {(valid & sat).sum()}/16; "
          f"of the valid: male & smiling {left}, ~black_hair {right}")
    save_png(OUT, framed_grid(images, sat, valid, ncols=8, scale=3))
    print(f"wrote {OUT} (green frame: valid and satisfying; red: not satisfying; grey: invalid) "
          f"in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
