"""Write a list of random expressions over a domain's concepts, for `conceptlang eval`.

A check of the shipped defaults on expressions nobody wrote: trees of AND, OR and NOT (and, with
``--weights``, weights) over the domain's concept names, drawn from a seed. An expression is kept
when between ``--min-p`` and ``--max-p`` of the generator's data satisfy it (so that it is
satisfiable, has a reference to compare with, and is not nearly the whole data), and when its
text differs from every expression kept before.

    python training/random_expressions.py scenes -n 24 --seed 1 -o /tmp/random_scenes.txt
    conceptlang eval /tmp/random_scenes.txt -n 64 --seed 5 --threads 1 -o /tmp/random_scenes.json
"""

from __future__ import annotations

import argparse
import random

from conceptlang.evaluation.distribution import _draw_arrays
from conceptlang.syntax import evaluate, parse_expr, unparse
from conceptlang.syntax.ast import And, Concept, Expr, Not, Or, Weighted

CONCEPTS = {
    "scenes": ["circle", "square", "triangle", "red", "green", "blue", "yellow", "purple", "cyan",
               "small", "large"],
    "faces": ["male", "smiling", "eyeglasses", "young", "black_hair", "blond_hair", "brown_hair",
              "bald"],
}
PLACES = [0.3, 0.4, 0.5, 0.6, 0.7]


def leaf(domain: str, rng: random.Random, places: bool) -> Expr:
    if places and domain == "scenes" and rng.random() < 0.12:
        return Concept("position", None, (rng.choice(PLACES), rng.choice(PLACES)))
    return Concept(rng.choice(CONCEPTS[domain]))


def tree(domain: str, rng: random.Random, n_leaves: int, weights: bool, places: bool) -> Expr:
    if n_leaves == 1:
        node = leaf(domain, rng, places)
    else:
        k = 2 if n_leaves < 4 or rng.random() < 0.7 else 3
        k = min(k, n_leaves)
        cuts = sorted(rng.sample(range(1, n_leaves), k - 1))
        sizes = [b - a for a, b in zip([0] + cuts, cuts + [n_leaves])]
        parts = [tree(domain, rng, s, weights, places) for s in sizes]
        node = And(tuple(parts)) if rng.random() < 0.65 else Or(tuple(parts))
    if rng.random() < 0.3:
        node = Not(node)
    if weights and rng.random() < 0.1:
        node = Weighted(rng.choice([0.5, 1.5, 2.0, 3.0]), node)
    return node


def data_probability(expr: Expr, labels: list[dict]) -> float:
    return sum(evaluate(expr, lab) for lab in labels) / len(labels)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("domain", choices=sorted(CONCEPTS))
    ap.add_argument("-n", type=int, default=24, help="expressions to keep")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-leaves", type=int, default=4)
    ap.add_argument("--min-p", type=float, default=0.02)
    ap.add_argument("--max-p", type=float, default=0.8)
    ap.add_argument("--weights", action="store_true")
    ap.add_argument("--no-places", action="store_true")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    labels = _draw_arrays(args.domain, 4000, 12345).to_dicts()
    kept: list[tuple[str, float]] = []
    seen: set[str] = set()
    tries = 0
    while len(kept) < args.n and tries < 100_000:
        tries += 1
        e = tree(args.domain, rng, rng.randint(1, args.max_leaves), args.weights, not args.no_places)
        text = unparse(e)
        if text in seen or parse_expr(text) != e:
            continue
        seen.add(text)
        p = data_probability(e, labels)
        if args.min_p <= p <= args.max_p:
            kept.append((text, p))
    with open(args.output, "w") as f:
        f.write(f"# {len(kept)} random expressions (training/random_expressions.py {args.domain} "
                f"-n {args.n} --seed {args.seed}{' --weights' if args.weights else ''}); "
                f"data probability in brackets\n@domain {args.domain}\n")
        for text, p in kept:
            f.write(f"# p = {p:.3f}\n{text}\n")
    print(f"wrote {len(kept)} expressions to {args.output} ({tries} drawn)")


if __name__ == "__main__":
    main()
