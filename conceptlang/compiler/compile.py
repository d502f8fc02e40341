"""``compile``: text or AST → :class:`EnergyGraph` (resolve, expand, normalise, share, lower, check)."""

from __future__ import annotations

import math
import sys
import warnings
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterator

from conceptlang.compiler.checks import check_sampler, satisfiable
from conceptlang.compiler.graph import EnergyGraph, linear_coefficients
from conceptlang.compiler.lower import GraphBuilder, NotExpandable, check_log_z, expand_dnf, show
from conceptlang.compiler.options import CompileOptions, make_options
from conceptlang.compiler.or_weights import flatten_and, weight_of, weighted_conjunction
from conceptlang.compiler.resolve import check_definitions_shadowing
from conceptlang.compiler.select import ModelSetWarning, objects_needed, select_model_set
from conceptlang.errors import CompileError, ConceptLangError
from conceptlang.interface import ConceptRegistry
from conceptlang.syntax.ast import And, Concept, Expr, Not, Or, Program, Weighted
from conceptlang.syntax.parser import parse
from conceptlang.syntax.passes import expand_definitions
from conceptlang.syntax.walk import depth

MAX_DEPTH = 20_000  # nesting levels the compiler accepts (the parser accepts 10,000)


class UnsatisfiableWarning(UserWarning):
    """The expression's boolean semantics cannot hold (e.g. two values of an exclusive family)."""


@contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    old = sys.getrecursionlimit()
    if limit > old:
        sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _to_ast(expr_or_text: Any) -> tuple[str, Program | Expr]:
    if isinstance(expr_or_text, str):
        return expr_or_text, parse(expr_or_text)
    if isinstance(expr_or_text, (Program, Concept, Not, And, Or, Weighted)):
        return "", expr_or_text
    raise CompileError(f"compile() takes expression text or an AST node, not {type(expr_or_text).__name__}")


def _expand(program: Program, registry: ConceptRegistry, source: str) -> Expr:
    check_definitions_shadowing(program.definitions, registry, source)
    if not program.definitions:
        return program.body
    return expand_definitions(program)


# Compile options a registry may suggest through its sampler settings (an explicit option wins).
REGISTRY_SUGGESTS = ("alpha", "and_mode", "negation", "free_families", "named_positions", "named_radius")


def compile(expr_or_text: Any, registry: ConceptRegistry, **options: Any) -> EnergyGraph:
    """Compile a ConceptLang expression against a registry into an :class:`EnergyGraph`.

    Options are those of :class:`~conceptlang.compiler.options.CompileOptions` (``alpha``, ``tau``,
    ``and_mode``, ``negation``, ``free_families``, ``named_positions``, ``named_radius``, ``or_weights``,
    ``or_mode``, ``log_z``, ``max_disjuncts``, ``strict``, ``domain``, ``sampler``).
    Unset ``alpha``, ``and_mode`` and ``negation`` take the registry's tuned values (sampler
    settings keys of the same names) or the defaults (0.5, ``"sum"``, ``"ratio"``).
    """
    user_set = tuple(k for k in REGISTRY_SUGGESTS if options.get(k) is not None)
    opts = make_options(**options)
    source, tree = _to_ast(expr_or_text)
    expr = _expand(tree, registry, source) if isinstance(tree, Program) else tree
    d = depth(expr)
    if d > MAX_DEPTH:
        raise CompileError(f"the expression nests {d} levels deep; the compiler accepts at most {MAX_DEPTH}")
    with _recursion_limit(max(sys.getrecursionlimit(), 12 * d + 2000)):
        return _compile(expr, source, registry, opts, user_set)


def _compile(expr: Expr, source: str, registry: ConceptRegistry, opts: CompileOptions,
             user_set: tuple[str, ...]) -> EnergyGraph:
    chosen = select_model_set(expr, source, registry, opts.domain)
    registry, refs, domain = chosen.registry, chosen.refs, chosen.domain
    notices: list[str] = []
    if chosen.warning is not None:
        _warn(chosen.warning, ModelSetWarning, opts.strict, notices)

    if set(REGISTRY_SUGGESTS) - set(user_set):
        pre_models = list({id(m): m for m in (registry.model_for(r)[0] for r in refs.values())}.values())
        tuned = _settings(registry, pre_models)
        suggested = {k: tuned[k] for k in REGISTRY_SUGGESTS if k not in user_set and tuned.get(k) is not None}
        if suggested:
            opts = replace(opts, **suggested).validated()

    k_objects = objects_needed(expr, refs)
    # the check reads every concept as one object's; with several objects `red & blue` may hold
    sat = satisfiable(expr, refs, registry, domain) if k_objects == 1 else None
    text = source.strip() or show(expr)
    if k_objects > 1:
        notices.append(f"satisfiability not checked: the expression places {k_objects} objects, and the check "
                       "reads every concept as one object's")
    elif sat is False:
        msg = (f"{text!r} is unsatisfiable: no single object can satisfy it under the domain's exclusive "
               f"families (e.g. two colours at once); its samples cannot all fit")
        _warn(msg, UnsatisfiableWarning, opts.strict, notices)
    elif sat is None:
        notices.append("satisfiability not checked: too many concepts to enumerate")

    # Complements and free-family enumeration add OR branches; if the whole DNF then outgrows
    # max_disjuncts, fall back to leaving the free discrete families to the model (named places and
    # free positions still drawn), then every free family, then to ratio negations.
    attempts = [(opts, True)]
    if opts.free_families != "model":
        attempts.append((opts, False))
        attempts.append((replace(opts, free_families="model"), True))
    if opts.negation == "complement":
        attempts.append((replace(attempts[-1][0], negation="ratio"), attempts[-1][1]))
    asked = None  # how the OR branches were weighted with the options as given (the first attempt)
    for k, (attempt, enumerate_free) in enumerate(attempts):
        last = k == len(attempts) - 1
        try:
            built = _lower(expr, registry, domain, refs, attempt, enumerate_free)
        except CompileError:  # or_mode="dnf" and no DNF within max_disjuncts
            if last:
                raise
            continue
        if k == 0:
            asked = built[0].or_weights
        if built[3] != "lse" or built[4] or attempt.or_mode == "lse" or last:
            break
    builder, root, disjuncts, route, all_explicit, models, extra = built
    if k:
        how = (f"negation={attempt.negation}, free_families={attempt.free_families}" if enumerate_free else
               f"its free discrete families left to the model (free_families={attempt.free_families} still "
               "draws its named places and free positions)")
        extra.insert(0, f"the expression's DNF with negation={opts.negation}, free_families={opts.free_families} "
                        f"outgrew max_disjuncts = {opts.max_disjuncts}; lowered with {how}")
        opts = attempt
    notices.extend(extra)
    for msg in dict.fromkeys(builder.no_layout):  # values beside places that no layout of the data holds
        _warn(msg, UnsatisfiableWarning, opts.strict)  # the notice is added where the graph is built
    if route == "lse" and not all_explicit:
        implicit = sorted({m.name for m in models if m.kind != "explicit"})
        ow = asked if asked is not None else builder.or_weights
        hint = (f"; a weighted OR is such a mixture when its branches take the data's weights, which did not "
                f"apply here ({ow.reason})" if ow is not None and ow.source == "equal" else "")
        if sat is False:  # the likelier fault: say it first
            hint = (f"; {text!r} is unsatisfiable (no single object can satisfy it under the domain's exclusive "
                    "families), so no data example weights its OR's branches" + hint)
        raise CompileError(
            f"this OR needs log-sum-exp energies ({notices[-1].split(': ', 1)[-1] if notices else 'or_mode=lse'}), "
            f"which implicit models ({', '.join(implicit)}) cannot provide; implicit models compose OR only "
            f"through the exact DNF mixture (weight-1, τ = 1 ORs){hint}")
    if opts.sampler is not None:
        check_sampler(models, opts.sampler)

    settings = _settings(registry, models)
    weights_above, low_linear, disjuncts = _weights_floor(expr, registry, domain, refs, attempt, builder, root,
                                                          route, disjuncts, notices)
    finish = _finisher(registry, domain) if opts.finish else None
    if finish is not None:
        notices.append(f"below σ = {finish[1]:g} the finishing model {finish[0].name} alone denoises every chain "
                       "(its manifest's finish_below; finish=False composes to the end)")
    return EnergyGraph(
        expression=text,
        domain=domain,
        leaves=builder.leaves,
        nodes=builder.nodes,
        root=root,
        node_text=builder.text,
        groundings=builder.groundings,
        disjuncts=disjuncts,
        route=route,
        notices=notices,
        options=opts.to_json(),
        sampler_settings=settings,
        expr=expr,
        refs=refs,
        model_set=chosen.record,
        or_weights=builder.or_weights,
        drawer=getattr(registry, "value_draws", None) if builder.drawn else None,
        weights_above=weights_above,
        low_linear=low_linear,
        finish=finish,
    )


def _warn(msg: str, category: type[Warning], strict: bool, notices: list[str] | None = None) -> None:
    """Raise ``msg`` as a :class:`CompileError` under ``strict``; else warn with it (pointing at the
    caller of :func:`compile`) and, given ``notices``, add it to them."""
    if strict:
        raise CompileError(msg)
    warnings.warn(msg, category, stacklevel=4)
    if notices is not None:
        notices.append("warning: " + msg)


def _finisher(registry: ConceptRegistry, domain: str) -> tuple[Any, float] | None:
    """The registry's finishing model of ``domain`` and its level (optional hook ``finisher``), or None."""
    hook = getattr(registry, "finisher", None)
    if not callable(hook):
        return None
    found = hook(domain)
    if found is None:
        return None
    model, below = found
    if not getattr(model, "noise_conditional", False) or model.kind != "implicit":
        raise CompileError(f"the finishing model {model.name} of {domain!r} must be a noise-conditional implicit model")
    return model, float(below)


def _weights_floor(expr: Expr, registry: ConceptRegistry, domain: str, refs: dict, opts: CompileOptions,
                   builder: GraphBuilder, root: int, route: str, disjuncts: list | None,
                   notices: list[str]) -> tuple:
    """Where the registry limits concept weights to high noise levels (the optional
    ``concept_weights_above`` hook: a level σ_w, or None), the coefficients a chain takes below σ_w:
    those of the expression lowered without weights, on the same leaves. Returns (σ_w or None, the
    linear route's low coefficients or None, the disjuncts with their ``low_coefs``).

    Below σ_w a weighted concept, calibrated or written (``2 * red``, or a concept a conjunction
    repeats, ``red & (red & circle)``), scores with weight 1, so its
    extra (w − 1)·(E_c − E_prior) drops out and its rows are not evaluated there. Applies to the
    linear and DNF routes (the sampled ones) when a weight was applied; the lowering without weights
    must use no leaf the weighted one lacks, and each weighted branch the leaves of exactly one
    branch of it, or the weights act at every level (with a notice). Where the two lowerings give
    the same coefficients (every weight dropped by the complement, ``~(0.5 * smiling)``), there is
    no level to record."""
    hook = getattr(registry, "concept_weights_above", None)
    if hook is None or route not in ("linear", "dnf"):
        return None, None, disjuncts
    plain_expr = _without_concept_weights(expr)
    written = plain_expr is not expr or builder.repeated
    if not (builder.calibrated or written):
        return None, None, disjuncts
    models = list({id(leaf.model): leaf.model for leaf in builder.leaves}.values())
    level = hook(models)
    if level is None:
        return None, None, disjuncts

    def every_level() -> tuple:
        notices.append("the concept weights act at every noise level: this expression without them "
                       "lowers to other leaves or branches")
        return None, None, disjuncts

    try:
        plain, plain_root, plain_disjuncts, plain_route, *_ = _lower(plain_expr, registry, domain, refs,
                                                                     replace(opts, concept_weights=False),
                                                                     builder.enumerate_free, repeats_once=True)
    except CompileError:
        return every_level()
    index = {leaf.key: leaf.index for leaf in builder.leaves}
    where = [index.get(leaf.key) for leaf in plain.leaves]

    def mapped(coefs: tuple[float, ...]) -> tuple[float, ...] | None:
        out = [0.0] * len(builder.leaves)
        for j, c in enumerate(coefs):
            if c != 0.0:
                if where[j] is None:
                    return None
                out[where[j]] += c
        return tuple(out)

    low_linear: tuple[float, ...] | None = None
    low_rows: list[tuple[float, ...] | None] = []
    if route == "linear" and plain_route == "linear":
        low_linear = mapped(linear_coefficients(plain.nodes, plain_root, len(plain.leaves)))
        low_rows = [low_linear]
    elif route == "dnf" and plain_route == "dnf" and len(plain_disjuncts) == len(disjuncts):
        low_rows = _matched_rows(disjuncts, [mapped(d.coefs) for d in plain_disjuncts])
    if not low_rows or any(r is None for r in low_rows):
        return every_level()
    same = (low_linear == linear_coefficients(builder.nodes, root, len(builder.leaves)) if route == "linear"
            else all(r == d.coefs for d, r in zip(disjuncts, low_rows)))
    if same:
        return None, None, disjuncts
    which, below = (("calibrated", "as written") if not written else
                    ("calibrated and written" if builder.calibrated else "written", "with weight 1"))
    notices.append(f"the {which} concept weights act at noise levels σ ≥ {level:g} (the models' manifest's "
                   f"concept_weights_above); below, concepts score {below}")
    if route == "dnf":
        disjuncts = [replace(d, low_coefs=r) for d, r in zip(disjuncts, low_rows)]
    return float(level), low_linear, disjuncts


def _without_concept_weights(expr: Expr) -> Expr:
    """``expr`` with every positive weight on a concept, on a conjunction or on an OR dropped
    (``2 * red`` → ``red``, ``2 * (red & ~circle)`` → ``red & ~circle``, ``2 * (red | blue)`` →
    ``red | blue``, ``-2 * ~red`` → ``red``: the forms the joint lowering gives extra shares), and a
    concept repeated in a conjunction kept once (``red & circle & red`` → ``red & circle``, and
    ``red & (red & circle)`` too: the lowering counts repeats over nested conjunctions); ``expr``
    itself where it has none of these."""
    from conceptlang.syntax.walk import transform

    def rewrite(node):
        w, inner = weight_of(node)  # nested weights multiplied (`-1 * 1.5 * ~e`: −1.5 on ~e)
        if isinstance(node, Weighted) and w > 0 and isinstance(inner, Concept):
            return inner
        if isinstance(node, Weighted) and w < 0 and isinstance(inner, Not):  # -2 * ~e: 2 * e
            return inner.expr
        if isinstance(node, Weighted) and w > 0 and (isinstance(inner, Or) or weighted_conjunction(node) is not None):
            return inner
        if isinstance(node, And):
            seen: set = set()
            terms = []
            flat = flatten_and(node.terms)
            for t in flat:
                if isinstance(t, Concept):
                    if t._key() in seen:
                        continue
                    seen.add(t._key())
                terms.append(t)
            if len(terms) < len(flat):
                return terms[0] if len(terms) == 1 else replace(node, terms=tuple(terms))
        return node

    return transform(expr, rewrite)


def _matched_rows(disjuncts: list, plain: list) -> list:
    """Each weighted disjunct's row of the lowering without weights: the one whose leaves it uses
    (a weight only adds leaves beside a branch's own); None where none, or more than one, does.
    The branches keep the weighted lowering's shares."""
    used = [None if r is None else frozenset(i for i, c in enumerate(r) if c != 0.0) for r in plain]
    out = []
    for d in disjuncts:
        mine = {i for i, c in enumerate(d.coefs) if c != 0.0}
        fits = [k for k, u in enumerate(used) if u is not None and u <= mine]
        most = max((len(used[k]) for k in fits), default=0)
        best = [k for k in fits if len(used[k]) == most]
        out.append(plain[best[0]] if len(best) == 1 else None)
    return out


def _lower(expr: Expr, registry: ConceptRegistry, domain: str, refs: dict, opts: CompileOptions,
           enumerate_free: bool = True, repeats_once: bool = False) -> tuple:
    """Lower and pick the sampling route: (builder, root, disjuncts, route, all_explicit, models, notices)."""
    notices: list[str] = []
    builder = GraphBuilder(registry, domain, refs, opts, enumerate_free)
    builder.repeats_once = repeats_once
    root = builder.lower_root(expr, check_log_z(expr, opts))
    if builder.or_weights is not None:
        notices.append(builder.or_weights.notice())
    notices.extend("warning: " + n for n in dict.fromkeys(builder.no_layout))
    notices.extend(dict.fromkeys(builder.complement_skipped))
    notices.extend(dict.fromkeys(builder.enumerated))
    by_what: dict[tuple[str, str], list[str]] = {}  # one notice per thing drawn, however many branches
    for conj, what, how in builder.drawn:
        by_what.setdefault((what, how), []).append(conj)
    for (what, how), conjs in by_what.items():
        where = conjs[0] if len(conjs) == 1 else f"{len(conjs)} conjunctions"
        notices.append(f"{where}: {what} drawn per chain {how}")
    if builder.calibrated:
        notices.append("calibrated concept weights (from the models' manifest): "
                       + ", ".join(f"{c} ×{w:g}" for c, w in sorted(builder.calibrated.items()))
                       + "; concept_weights=False (CLI --no-concept-weights) scores concepts as written")
    models = list({id(leaf.model): leaf.model for leaf in builder.leaves}.values())
    for m in models:
        rng = getattr(m, "sigma_range", None)  # optional on a model: (lo, hi) noise levels it acts at
        if rng is not None:
            hi = "∞" if math.isinf(rng[1]) else f"{rng[1]:g}"
            notices.append(f"{m.name} acts at noise levels σ in [{rng[0]:g}, {hi}] only (its manifest's sigma_range); "
                           "at other levels its concepts score as the domain prior")
    all_explicit = all(m.kind == "explicit" for m in models)

    disjuncts = None
    has_or = builder.has_lse(root)
    if not has_or:
        route = "linear"
    elif opts.or_mode == "lse":
        route = "lse"
    else:
        try:
            disjuncts = expand_dnf(builder, root, opts.max_disjuncts)
            route = "dnf"
        except NotExpandable as why:
            if opts.or_mode == "dnf":
                raise CompileError(f"or_mode='dnf' was asked for, but {why}") from None
            route = "lse"
            notices.append(f"OR is sampled through log-sum-exp energies, not the exact DNF mixture: {why}")
    return builder, root, disjuncts, route, all_explicit, models, notices


def _settings(registry: ConceptRegistry, models: list) -> dict:
    try:
        settings = registry.sampler_settings(models)
    except ConceptLangError:
        raise
    except Exception as err:  # a registry bug should not look like a compiler bug
        raise CompileError(f"the registry could not give sampler settings: {err}") from err
    return dict(settings or {})
