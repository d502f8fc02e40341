"""Rewrite passes over the AST; each keeps the boolean semantics (property-tested).

* :func:`flatten` — merge nested chains of the same operator, unwrap one-term chains
  (associativity; keeps the energy exactly, since AND is a sum and OR a log-sum-exp).
* :func:`fold_weights` — ``a * (b * e)`` → ``(a*b) * e`` and ``1 * e`` → ``e`` (keeps the energy).
* :func:`to_nnf` — negation normal form for the *boolean* semantics (the compiler lowers
  negation as written; NNF changes energies).
* :func:`eliminate_common_subexpressions` — share equal subtrees (one object each), drop
  repeated OR branches, merge repeated AND terms into one weighted term.
* :func:`expand_definitions` — inline ``name = expr;`` definitions (cycles, duplicates and
  shadowing are :class:`NameResolutionError`).
* :func:`concepts_of` — the concept leaves an expression mentions.

All passes run with explicit stacks and memoise by node identity (see :mod:`.walk`).
"""

from __future__ import annotations

import math
from typing import Callable, Collection, Iterable

from conceptlang.errors import NameResolutionError
from conceptlang.syntax.ast import And, Concept, Definition, Expr, Node, Not, Or, Program, Weighted
from conceptlang.syntax.walk import postorder, transform, with_children


def _on_program(node: Node, expr_pass: Callable[[Expr], Expr]) -> Node:
    if isinstance(node, Program):
        definitions = tuple(with_children(d, [expr_pass(d.expr)]) for d in node.definitions)
        return Program(definitions, expr_pass(node.body), node.span)
    return expr_pass(node)


# --------------------------------------------------------------------------------------------
# flatten


def flatten(expr: Expr) -> Expr:
    """Merge ``And`` inside ``And`` and ``Or`` inside ``Or``; unwrap one-term chains.

    ``(a & b) & c`` → ``a & b & c``; ``And((a,))`` → ``a``. Runs in linear time even for
    10,000 levels of ``((a & b) & c) & ...`` (each chain is gathered once, at its top).
    """
    return _on_program(expr, _flatten_expr)


def _flatten_expr(root: Expr) -> Expr:
    # The graph walked: a chain's "children" are the leaves of its same-operator cluster.
    plan: dict[int, tuple[Node, list[Node]]] = {}

    def gathered(node: Node) -> list[Node]:
        if not isinstance(node, (And, Or)):
            return list(node._children())
        kind, terms, stack = type(node), [], list(reversed(node.terms))
        while stack:
            term = stack.pop()
            if type(term) is kind:
                stack.extend(reversed(term.terms))
            else:
                terms.append(term)
        return terms

    done: dict[int, Node] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if id(node) not in plan:
            plan[id(node)] = (node, gathered(node))
        kids = plan[id(node)][1]
        if not expanded:
            stack.append((node, True))
            stack.extend((k, False) for k in reversed(kids) if id(k) not in done)
            continue
        new_kids = [done[id(k)] for k in kids]
        if isinstance(node, (And, Or)):
            if len(new_kids) == 1:
                done[id(node)] = new_kids[0]
            elif len(new_kids) == len(node.terms) and all(a is b for a, b in zip(new_kids, node.terms)):
                done[id(node)] = node
            else:
                done[id(node)] = type(node)(tuple(new_kids), node.span)
        else:
            done[id(node)] = with_children(node, new_kids) if new_kids else node
    return done[id(root)]


# --------------------------------------------------------------------------------------------
# weight folding


def fold_weights(expr: Expr) -> Expr:
    """``a * (b * e)`` → ``(a*b) * e`` and ``1 * e`` → ``e``.

    Folding happens only when ``a*b`` is finite and non-zero: then its sign is the product of
    the signs, so the boolean meaning (which depends on the sign) is kept; a zero or overflowing
    product is left unfolded.
    """

    def rewrite(node: Node) -> Node:
        if not isinstance(node, Weighted):
            return node
        inner = node.expr
        if isinstance(inner, Weighted):
            product = node.weight * inner.weight
            if math.isfinite(product) and product != 0.0:
                return inner.expr if product == 1.0 else Weighted(product, inner.expr, node.span)
        if node.weight == 1.0:
            return inner
        return node

    return _on_program(expr, lambda e: transform(e, rewrite))


# --------------------------------------------------------------------------------------------
# negation normal form


def to_nnf(expr: Expr, keep_weights: bool = True) -> Expr:
    """Negation normal form: ``Not`` only directly above a :class:`Concept`.

    De Morgan pushes ``~`` through ``&``/``|``, and ``~~e`` → ``e``. With ``keep_weights`` the
    weights stay where they are (``~(2 * a)`` → ``2 * ~a``, which has the same boolean meaning
    because a weight's meaning depends only on its sign); without it, weights are dropped and a
    negative weight becomes a negation, leaving only Concept, Not(Concept), And and Or.
    """
    return _on_program(expr, lambda e: _nnf(e, keep_weights))


def _nnf(root: Expr, keep_weights: bool) -> Expr:
    done: dict[tuple[int, bool], Node] = {}

    def kids_of(node: Node, negated: bool) -> list[tuple[Node, bool]]:
        if isinstance(node, Not):
            return [(node.expr, not negated)]
        if isinstance(node, Weighted):
            return [(node.expr, negated if keep_weights else negated != (node.weight < 0))]
        if isinstance(node, (And, Or)):
            return [(t, negated) for t in node.terms]
        return []

    stack: list[tuple[Node, bool, bool]] = [(root, False, False)]
    while stack:
        node, negated, expanded = stack.pop()
        key = (id(node), negated)
        if key in done:
            continue
        kids = kids_of(node, negated)
        if not expanded and kids:
            stack.append((node, negated, True))
            stack.extend((k, n, False) for k, n in reversed(kids) if (id(k), n) not in done)
            continue
        if isinstance(node, Concept):
            done[key] = Not(node, node.span) if negated else node
        elif isinstance(node, Not):
            done[key] = done[(id(node.expr), not negated)]
        elif isinstance(node, Weighted):
            child = done[(id(kids[0][0]), kids[0][1])]
            done[key] = with_children(node, [child]) if keep_weights else child
        elif isinstance(node, (And, Or)):
            terms = tuple(done[(id(k), n)] for k, n in kids)
            kind = type(node) if not negated else (Or if isinstance(node, And) else And)
            if kind is type(node) and all(a is b for a, b in zip(terms, node.terms)):
                done[key] = node
            else:
                done[key] = kind(terms, node.span)
        else:
            raise TypeError(f"not a ConceptLang expression: {type(node).__name__}")
    return done[(id(root), False)]


# --------------------------------------------------------------------------------------------
# common subexpressions


def eliminate_common_subexpressions(expr: Expr, merge_like_terms: bool = True) -> Expr:
    """Share equal subtrees and remove repeated chain terms.

    * Structurally equal subtrees become one object (the result is a DAG; the compiler keys its
      energy-graph nodes on them).
    * Repeated ``|`` branches are dropped: ``a | b | a`` → ``a | b`` (a mixture of two equal
      components is the same distribution).
    * With ``merge_like_terms``, repeated ``&`` terms are merged into one weighted term:
      ``a & b & a`` → ``2 * a & b`` and ``2 * a & 3 * a`` → ``5 * a``, which is the same energy
      under the default (plain sum) AND. Weights of different signs are never merged (their
      sum's sign would not carry the boolean meaning). Turn this off for AND modes where
      ``a & a`` is not ``2 * a``.
    """
    return _on_program(expr, lambda e: _cse(e, merge_like_terms))


def _cse(root: Expr, merge_like_terms: bool) -> Expr:
    canon: dict[Node, Node] = {}

    def share(node: Node) -> Node:
        return canon.setdefault(node, node)

    def merge_and(node: And) -> Node:
        groups: dict[tuple[int, bool], list] = {}  # (id(base), negative) -> [base, total, count]
        order: list[tuple[int, bool]] = []
        for term in node.terms:
            weight, base = (term.weight, term.expr) if isinstance(term, Weighted) else (1.0, term)
            key = (id(base), weight < 0)
            if key not in groups:
                groups[key] = [base, 0.0, 0, term]
                order.append(key)
            group = groups[key]
            group[1] += weight
            group[2] += 1
        terms: list[Node] = []
        for key in order:
            base, total, count, first = groups[key]
            if count == 1:
                terms.append(first)
            elif not math.isfinite(total):  # overflow: keep the repeats as they are
                terms.extend(t for t in node.terms if _base_key(t) == key)
            else:
                terms.append(base if total == 1.0 else share(Weighted(total, base, first.span)))
        return _chain(And, terms, node)

    def rewrite(node: Node) -> Node:
        if isinstance(node, Or):
            seen: set[int] = set()
            terms = [t for t in node.terms if not (id(t) in seen or seen.add(id(t)))]
            node = _chain(Or, terms, node)
        elif isinstance(node, And) and merge_like_terms:
            node = merge_and(node)
        return share(node)

    return transform(root, rewrite)


def _base_key(term: Node) -> tuple[int, bool]:
    if isinstance(term, Weighted):
        return (id(term.expr), term.weight < 0)
    return (id(term), False)


def _chain(kind: type, terms: list[Node], original: Node) -> Node:
    if len(terms) == 1:
        return terms[0]
    if len(terms) == len(original.terms) and all(a is b for a, b in zip(terms, original.terms)):
        return original
    return kind(tuple(terms), original.span)


# --------------------------------------------------------------------------------------------
# definitions


def definition_errors(program: Program, concepts: Collection[str] | None = None) -> list[NameResolutionError]:
    """Every problem with a program's definitions, in source order (empty when it is fine).

    Problems: a name defined twice; a definition named like a known concept (``concepts``, e.g.
    the registry's value names), which would shadow it; a definition used with arguments;
    definitions that refer to themselves, directly or through others.
    """
    errors: list[NameResolutionError] = []
    defs: dict[str, Definition] = {}
    for d in program.definitions:
        if d.name in defs:
            first = defs[d.name].span
            where = f" (first defined at {first.describe()})" if first.line else ""
            errors.append(NameResolutionError(f"{d.name!r} is defined twice{where}", d.span.location()))
        else:
            defs[d.name] = d
        if concepts is not None and d.name in concepts:
            errors.append(
                NameResolutionError(
                    f"the definition {d.name!r} would shadow the concept {d.name!r}; choose another name",
                    d.span.location(),
                )
            )
    # Uses with arguments, and the reference graph between definitions.
    refs: dict[str, list[str]] = {}
    for owner, expr in [(d.name, d.expr) for d in program.definitions] + [(None, program.body)]:
        targets: list[str] = []
        for node in postorder(expr):
            if isinstance(node, Concept) and node.family is None and node.name in defs:
                if node.args is not None:
                    errors.append(
                        NameResolutionError(
                            f"{node.name!r} is a definition and takes no arguments", node.span.location()
                        )
                    )
                else:
                    targets.append(node.name)
        if owner is not None and owner not in refs:
            refs[owner] = targets
    errors.extend(_cycle_errors(refs, defs))
    return errors


def _cycle_errors(refs: dict[str, list[str]], defs: dict[str, Definition]) -> list[NameResolutionError]:
    # Iterative depth-first search with colours; each cycle is reported once, from where it is entered.
    colour: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    errors: list[NameResolutionError] = []
    for start in refs:
        if start in colour:
            continue
        path: list[str] = [start]
        iters = [iter(refs[start])]
        colour[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                iters.pop()
                continue
            state = colour.get(nxt)
            if state == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                d = defs[nxt]
                errors.append(
                    NameResolutionError(
                        "definitions refer to themselves: " + " -> ".join(cycle), d.span.location()
                    )
                )
            elif state is None:
                colour[nxt] = 1
                path.append(nxt)
                iters.append(iter(refs.get(nxt, ())))
    return errors


def expand_definitions(program: Program | Expr, concepts: Collection[str] | None = None) -> Expr:
    """Inline every definition into the body and return the resulting expression.

    Definitions may refer to each other in any order. A bare name that matches a definition
    refers to it; qualified names (``family.value``) never do. Each definition is expanded once
    and shared (the result is a DAG), so chains of definitions cannot blow up memory.
    Raises :class:`NameResolutionError` for the first problem :func:`definition_errors` finds.
    """
    if not isinstance(program, Program):
        return program
    errors = definition_errors(program, concepts)
    if errors:
        raise errors[0]
    if not program.definitions:
        return program.body
    defs = {d.name: d for d in program.definitions}
    expanded: dict[str, Expr] = {}

    def substitute(expr: Expr) -> Expr:
        def rewrite(node: Node) -> Node:
            if isinstance(node, Concept) and node.family is None and node.args is None and node.name in defs:
                return expanded[node.name]
            return node

        return transform(expr, rewrite)

    # Expand in dependency order (no cycles, checked above).
    for name in _dependency_order(defs):
        expanded[name] = substitute(defs[name].expr)
    return substitute(program.body)


def _dependency_order(defs: dict[str, Definition]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()
    for start in defs:
        if start in seen:
            continue
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            name, ready = stack.pop()
            if ready:
                order.append(name)
                continue
            if name in seen:
                continue
            seen.add(name)
            stack.append((name, True))
            for node in postorder(defs[name].expr):
                if isinstance(node, Concept) and node.family is None and node.name in defs and node.name not in seen:
                    stack.append((node.name, False))
    return order


# --------------------------------------------------------------------------------------------
# leaves


def concepts_of(expr: Program | Expr) -> frozenset[Concept]:
    """The distinct concepts an expression mentions (a Program's definitions are expanded)."""
    root = expand_definitions(expr) if isinstance(expr, Program) else expr
    return frozenset(node for node in postorder(root) if isinstance(node, Concept))


def normalise(expr: Expr) -> Expr:
    """flatten → fold_weights → eliminate_common_subexpressions (what the compiler lowers)."""
    return eliminate_common_subexpressions(fold_weights(flatten(expr)))


def iter_concepts(expr: Expr) -> Iterable[Concept]:
    """Concept leaves in source order, each distinct node object once."""
    return (node for node in postorder(expr) if isinstance(node, Concept))
