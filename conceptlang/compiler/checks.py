"""Static checks on a compiled expression: satisfiability and model capabilities."""

from __future__ import annotations

import itertools
from typing import Sequence

from conceptlang.errors import CompileError
from conceptlang.interface import ConceptModel, ConceptRef, ConceptRegistry
from conceptlang.syntax.ast import And, Concept, Expr, Not, Weighted
from conceptlang.syntax.walk import postorder

# What each sampler needs from every model of the graph. The sampling package keeps the same
# names in its SAMPLERS registry (tests check the two agree); the compiler cannot import it
# (sampling sits above the compiler in the layers).
SAMPLER_NEEDS: dict[str, tuple[str, ...]] = {
    "langevin": (),
    "annealed": ("noise_conditional",),
    "mala": ("explicit",),
    "heun": ("noise_conditional",),
    "dpmpp_2m": ("noise_conditional",),
    "dpmpp_2m_sde": ("noise_conditional",),
    "dpmpp_3m": ("noise_conditional",),
}

_SAT_COMBINATIONS = 1 << 16  # above this the check is skipped (and says so)


def _truth(order: list[Expr], refs: dict[Concept, ConceptRef], world: dict[ConceptRef, bool]) -> bool:
    """Boolean value of the last node of ``order`` (a children-first ordering), as syntax.evaluate."""
    value: dict[int, bool] = {}
    for node in order:
        if isinstance(node, Concept):
            v = world[refs[node]]
        elif isinstance(node, Not):
            v = not value[id(node.expr)]
        elif isinstance(node, Weighted):
            # A negative weight favours the opposite (the same rule as conceptlang.syntax.evaluate).
            v = value[id(node.expr)] != (node.weight < 0)
        elif isinstance(node, And):
            v = True
            for t in node.terms:
                if not value[id(t)]:
                    v = False
                    break
        else:
            v = False
            for t in node.terms:
                if value[id(t)]:
                    v = True
                    break
        value[id(node)] = v
    return value[id(order[-1])]


def satisfiable(expr: Expr, refs: dict[Concept, ConceptRef], registry: ConceptRegistry,
                domain: str) -> bool | None:
    """Whether some assignment that respects the exclusive families makes ``expr`` true.

    Exclusive families allow at most one of their values at a time (one object carries one colour);
    continuous concepts are independent. None when the expression has too many concepts to check."""
    distinct = sorted(set(refs.values()), key=lambda r: (r.family, r.value or "", r.params or ()))
    dom = registry.domain(domain)
    exclusive: dict[str, list[ConceptRef]] = {}
    free: list[ConceptRef] = []
    for r in distinct:
        try:
            fam = dom.family(r.family)
            excl = fam.kind == "discrete" and fam.exclusive
        except Exception:  # a registry whose domain lacks the family: treat the concept as free
            excl = False
        (exclusive.setdefault(r.family, []) if excl else free).append(r)
    choices: list[list[dict[ConceptRef, bool]]] = []
    for members in exclusive.values():
        opts = [{m: False for m in members}]
        for m in members:
            opts.append({k: k == m for k in members})
        choices.append(opts)
    for r in free:
        choices.append([{r: False}, {r: True}])
    total = 1
    for c in choices:
        total *= len(c)
        if total > _SAT_COMBINATIONS:
            return None
    order = list(postorder(expr))
    if total * len(order) > 4_000_000:
        return None
    for combo in itertools.product(*choices):
        world: dict[ConceptRef, bool] = {}
        for part in combo:
            world.update(part)
        if _truth(order, refs, world):
            return True
    return False


def check_sampler(models: Sequence[ConceptModel], sampler: str) -> None:
    """CompileError unless every model supports ``sampler``."""
    if sampler not in SAMPLER_NEEDS:
        raise CompileError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLER_NEEDS)}")
    for need in SAMPLER_NEEDS[sampler]:
        if need == "explicit":
            bad = [m.name for m in models if m.kind != "explicit"]
            if bad:
                raise CompileError(
                    f"the {sampler} sampler needs explicit energies (its Metropolis–Hastings test compares "
                    f"energies), but {', '.join(sorted(set(bad)))} {'is' if len(set(bad)) == 1 else 'are'} "
                    "implicit; use --sampler annealed, heun, dpmpp_2m or langevin")
        if need == "noise_conditional":
            bad = [m.name for m in models if not m.noise_conditional]
            if bad:
                raise CompileError(
                    f"the {sampler} sampler needs noise-conditional models, but "
                    f"{', '.join(sorted(set(bad)))} {'is' if len(set(bad)) == 1 else 'are'} not; "
                    "use --sampler langevin or mala")
