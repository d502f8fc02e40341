"""Iterative traversal and bottom-up rewriting of ASTs.

Everything here uses explicit stacks, so trees 10,000 levels deep (which the parser accepts) are
handled without touching Python's recursion limit. Rewrites memoise by node identity, so a DAG
with shared subtrees (what ``expand_definitions`` and common-subexpression elimination return)
is processed in time linear in its number of distinct nodes, not in its unfolded size. Other
stages (the compiler) can use these helpers for the same reasons.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from conceptlang.syntax.ast import And, Concept, Definition, Node, Not, Or, Program, Weighted


def children(node: Node) -> tuple[Node, ...]:
    """The child nodes, in source order (a Program's definitions, then its body)."""
    return node._children()


def with_children(node: Node, kids: Sequence[Node]) -> Node:
    """A copy of ``node`` with new children (same span and non-child fields).

    Returns ``node`` itself when every child is unchanged (by identity), which keeps sharing.
    """
    old = node._children()
    if len(old) == len(kids) and all(a is b for a, b in zip(old, kids)):
        return node
    if isinstance(node, Not):
        return Not(kids[0], node.span)
    if isinstance(node, Weighted):
        return Weighted(node.weight, kids[0], node.span)
    if isinstance(node, And):
        return And(tuple(kids), node.span)
    if isinstance(node, Or):
        return Or(tuple(kids), node.span)
    if isinstance(node, Definition):
        return Definition(node.name, kids[0], node.span)
    if isinstance(node, Program):
        return Program(tuple(kids[:-1]), kids[-1], node.span)
    if isinstance(node, Concept):
        return node
    raise TypeError(f"not a ConceptLang AST node: {type(node).__name__}")


def postorder(root: Node) -> Iterator[Node]:
    """Every distinct node (by identity) once, children before parents."""
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            yield node
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        kids = node._children()
        for i in range(len(kids) - 1, -1, -1):
            if id(kids[i]) not in seen:
                stack.append((kids[i], False))


def transform(root: Node, rewrite: Callable[[Node], Node]) -> Node:
    """Rebuild ``root`` bottom-up: each node gets its children rewritten, then ``rewrite`` is
    applied to it. ``rewrite`` sees children that are already final and must not recurse."""
    done: dict[int, Node] = {}
    for node in postorder(root):
        kids = node._children()
        rebuilt = with_children(node, [done[id(k)] for k in kids]) if kids else node
        done[id(node)] = rewrite(rebuilt)
    return done[id(root)]


def depth(root: Node) -> int:
    """Nesting depth: 1 for a concept, 1 + the deepest child otherwise."""
    level: dict[int, int] = {}
    for node in postorder(root):
        kids = node._children()
        level[id(node)] = 1 + max((level[id(k)] for k in kids), default=0)
    return level[id(root)]


def tree_size(root: Node) -> int:
    """Number of nodes the tree would have with shared subtrees written out (may be huge)."""
    size: dict[int, int] = {}
    for node in postorder(root):
        size[id(node)] = 1 + sum(size[id(k)] for k in node._children())
    return size[id(root)]
