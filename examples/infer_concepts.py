#!/usr/bin/env python
"""Concept inference: generate a few labelled scenes and faces, infer their concepts by energy.

    python examples/infer_concepts.py         # CPU, < 1 min

For each image prints the true labels next to the lowest-energy value of every family (and the
position that minimises the position model's energy).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conceptlang import load_registry  # noqa: E402
from conceptlang.data import generate  # noqa: E402
from conceptlang.inference.accuracy import true_value  # noqa: E402
from conceptlang.inference.inference import infer_batch  # noqa: E402


def main() -> None:
    registry = load_registry()
    for domain in ("scenes", "faces"):
        t0 = time.perf_counter()
        images, truth = generate(domain, 3, seed=2024)
        dom = registry.domain(domain)
        results = infer_batch(images, registry, domain)
        print(f"--- {domain} ({time.perf_counter() - t0:.1f} s for {len(images)} images)")
        for lab, res in zip(truth, results):
            parts = []
            for fam in dom.families:
                t, got = true_value(lab, fam), res.families[fam.name].value
                if fam.kind == "continuous":
                    parts.append(f"{fam.name} true ({t[0]:.2f}, {t[1]:.2f}) inferred ({got[0]:.2f}, {got[1]:.2f})")
                else:
                    parts.append(f"{fam.name} {t}→{got}{'' if t == got else ' ✗'}")
            print("  " + "; ".join(parts))


if __name__ == "__main__":
    main()
