"""Lowering a resolved expression to energy-graph nodes, and the exact DNF expansion.

Semantics (docs/design.md, "Semantics: energies" and "Decisions"), lowered as written:

* a conjunction's terms each carry a signed coefficient s: +1 for a positive term, w for
  ``w * X``, −α for ``~X`` (−α·w for ``w * ~X``);
  ``and_mode="sum"``:     E = Σ s_i E_i, plus E_prior when no term is positive;
  ``and_mode="product"``: E = E_prior + Σ s_i (E_i − E_prior);
  ``and_mode="joint"``:   as product, with the positive concepts that one joint model scores
                          together folded into one leaf E(x | c₁, …, c_k); a weight w > 0 on one
                          adds (w − 1)·(E_c − E_prior) beside it (a repeat counts as w = 2);
* anything that is not an AND or OR (a bare ``~X``, ``w * X``) is a one-term conjunction;
* a concept with a calibrated weight w (the registry's optional ``concept_weight`` hook) has its
  coefficient multiplied by w wherever it appears (so a bare such concept is a one-term
  conjunction too); inside a joint leaf it adds (w − 1)·(E_c − E_prior) beside the leaf;
* ``A | B | …`` → −τ·logsumexp(−E_i/τ − log Z_i);
* ``or_weights="data"`` (default): an OR that is a mixture (at the top of the expression, or a
  term of its top-level conjunction) is lowered as the mixture over the value combinations that
  satisfy it, each weighted by its data probability (:mod:`conceptlang.compiler.or_weights`);
  where that does not apply, as written, in equal shares, with a notice;
* ``negation="complement"``: in a conjunction, ``~v`` of a value of an exclusive discrete family
  becomes the OR of the family's other values (log Z_i = −log share_i, the data's shares given the
  conjunction's positive concepts), distributed over the conjunction — ``A & ~v`` →
  ``(A & v₁) | (A & v₂) | …`` — so that each branch is one product (one joint leaf in the joint
  mode); ``~a`` of a yes/no attribute becomes its known-absent value, a positive condition; a
  negated compound of such values (``~(circle & red)``) becomes the mixture over the combinations
  of its families where it is false, and a negated named place (``~position(x, y)``) a place each
  chain draws from the data where it does not hold. A weighted negation (``2 * ~v``, ``-1 * v``)
  is lowered as the negation. A negation this does not cover (a place beside a named one, a
  family without an absent value) keeps the ratio form −α, and so does everything under a negated
  or weighted compound that is not lowered so.

Identical leaves and identical sub-graphs are shared (hash-consing); sums fold nested sums
(so ``A & A`` and ``2 * A`` become the same node) and keep their terms in a canonical order, so
equal expressions give bit-identical energies whatever order they were written in.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from conceptlang.compiler.nodes import Disjunct, Grounding, Leaf, LeafNode, LseNode, Node, SumNode
from conceptlang.compiler.options import CompileOptions, away_radius, near_radius, places_apart
from conceptlang.compiler.or_weights import (
    OrWeights,
    Plan,
    dropped_weights,
    flatten_and,
    push_negations,
    value_families,
    weight_of,
    weighted_conjunction,
)
from conceptlang.compiler.or_weights import plan as or_plan
from conceptlang.errors import CompileError
from conceptlang.interface import ConceptRef, ConceptRegistry, Drawn, held_values
from conceptlang.syntax.ast import And, Concept, Expr, Not, Or, Weighted
from conceptlang.syntax.printer import PRECEDENCE, format_concept, precedence, unparse
from conceptlang.syntax.semantics import POSITION_TOLERANCE
from conceptlang.syntax.walk import postorder


def show(e: Expr, limit: int = 80) -> str:
    """The expression's text for explain output, cut at ``limit`` characters."""
    return unparse(e, limit=limit)


def _wrap(e: Expr, min_prec: int) -> str:
    """``show(e)``, in parentheses where an operand of binding level ``min_prec`` is expected."""
    s = show(e)
    return s if precedence(e) >= min_prec else f"({s})"


FLATTEN_OR_LIMIT = 64


def _digest(kind: str, body: str) -> str:
    """A short, run-independent key for an inner node: structural keys of deep graphs would grow
    with their depth (quadratic time); leaf keys stay readable and order the sums."""
    return f"{kind}#{hashlib.blake2b(body.encode(), digest_size=10).hexdigest()}"


@dataclass
class _ObjectPlan:
    """An object-level composition as :meth:`GraphBuilder._objects` lowers it."""

    places: list[tuple[ConceptRef, float]]  # the named places and their weights, one per object
    values: list[tuple[ConceptRef, float]]  # plain values beside them (some object holds each)
    avoided: list[Concept]  # negated places of the places' family
    model: Any  # the joint model serving every place
    fams: list[Any]  # the discrete families it draws per object
    drawn: tuple[ConceptRef, ...]  # their drawn references, one per family
    held: tuple[tuple[str, str], ...]  # (family, value): held by some object
    none: tuple[tuple[str, str], ...]  # (family, value): held by no object
    spread: bool  # named places drawn from the data (named_positions="data")
    within: float | None = None  # the radius the layouts are drawn within
    layout: tuple[float, ...] = ()  # the places' points, where whole layouts are drawn

    @property
    def refs(self) -> list[ConceptRef]:
        return [r for r, _ in self.places]

    @property
    def k(self) -> int:
        return len(self.places)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fams)


class GraphBuilder:
    """Hash-consed construction of leaves and nodes."""

    def __init__(self, registry: ConceptRegistry, domain: str, refs: dict[Concept, ConceptRef],
                 options: CompileOptions, enumerate_free: bool = True):
        self.registry = registry
        self.domain = domain
        self.refs = refs
        self.options = options
        self.leaves: list[Leaf] = []
        self._leaf_ids: dict[str, int] = {}
        self.nodes: list[Node] = []
        self.keys: list[str] = []
        self._node_ids: dict[Node, int] = {}
        self.text: dict[int, str] = {}
        self.groundings: list[Grounding] = []
        self._prior: int | None = None
        self._has_lse: dict[int, bool] = {}
        self._lowered: dict[int, int] = {}
        self._keep: list[Expr] = []
        self.calibrated: dict[str, float] = {}  # concept → calibrated weight applied (for notices)
        # negation="complement" applies outside negated/weighted compounds only (their lse would
        # enter with a coefficient ≠ 1, which is no mixture): > 0 while lowering inside one.
        self._ratio_only = 0
        # free_families="data" enumerates a conjunction's free families only where the conjunction
        # is the whole (sub-)expression being sampled, not a term of an enclosing conjunction
        # (`(green | cyan) & triangle`: a branch `green` must not branch over shapes): > 0 inside one.
        self._in_product = 0
        # False: free_families="data" leaves the discrete families a conjunction leaves free to the
        # model and still draws its continuous ones and named places (the compiler's retry when the
        # enumerated branches outgrow max_disjuncts)
        self.enumerate_free = enumerate_free
        self.complement_skipped: list[str] = []  # notices: complements left in the ratio form
        self.no_layout: list[str] = []  # warnings: values beside places that no layout of the data holds
        self.enumerated: list[str] = []  # notices: conjunctions whose free families were enumerated
        # conjunctions with continuous families drawn per chain: (conjunction, what is drawn, how)
        self.drawn: list[tuple[str, str, str]] = []
        self.or_weights: OrWeights | None = None  # how the expression's OR branches were weighted
        # the ORs as written (log-sum-exp node id → per child, the written branch it stands for); the
        # other log-sum-exps enumerate free families, which are not branches of the expression
        self.written_or: dict[int, tuple[tuple[tuple[int, int], str], ...]] = {}
        self._written_ors = 0
        self._drawable: dict[tuple, bool] = {}  # (domain, family, objects) → the registry can draw it
        # and_mode "joint": the weighted conjunctions spliced into the conjunction being lowered
        # (``2 * (red & circle)``): (w, their families); each branch's product adds one extra share
        # (w − 1)·(E(x | the group's values in the branch) − E_prior)
        self._groups: list[tuple[float, frozenset[str]]] = []
        # and_mode "joint": a concept a conjunction repeats (``red & circle & red``) is read as a
        # written weight (``2 * red``); ``repeated`` records one was, and ``repeats_once`` reads it
        # once, as the lowering without written weights does (the compiler's weights floor)
        self.repeated = False
        self.repeats_once = False

    # -- construction ---------------------------------------------------------------------------
    def _node(self, node: Node, key: str) -> int:
        nid = self._node_ids.get(node)
        if nid is None:
            nid = len(self.nodes)
            self.nodes.append(node)
            self.keys.append(key)
            self._node_ids[node] = nid
        return nid

    def leaf(self, ref: ConceptRef | None) -> int:
        if ref is None:
            model, cond = self.registry.prior(self.domain)
        else:
            model, cond = self.registry.model_for(ref)
        return self._leaf(ref, (), model, cond)

    def joint_leaf(self, refs: tuple[ConceptRef, ...], model, cond) -> int:
        """One leaf scoring all of ``refs`` at once (and_mode "joint")."""
        return self._leaf(None, refs, model, cond)

    def _joint_of(self, refs) -> int | None:
        """The joint leaf of ``refs`` (in a canonical order) through the registry's optional
        ``joint`` hook; None where the registry has none or cannot score them together."""
        hook = getattr(self.registry, "joint", None)
        refs = tuple(sorted(refs, key=lambda r: (r.family, r.value or "", r.params or ())))
        got = hook(refs) if hook is not None else None
        return None if got is None else self.joint_leaf(refs, *got)

    def _leaf(self, ref: ConceptRef | None, refs: tuple[ConceptRef, ...], model, cond) -> int:
        cond_key = ",".join(f"{k}={v!r}" for k, v in sorted(cond.items()))
        key = f"{model.name}[{cond_key}]"
        lid = self._leaf_ids.get(key)
        if lid is None:
            lid = len(self.leaves)
            self.leaves.append(Leaf(lid, ref, model, dict(cond), key, refs))
            self._leaf_ids[key] = lid
        nid = self._node(LeafNode(lid), "L" + key)
        self.text.setdefault(nid, self.leaves[lid].label)
        return nid

    def prior(self) -> int:
        if self._prior is None:
            self._prior = self.leaf(None)
        return self._prior

    def weighted_sum(self, terms: list[tuple[float, int]]) -> int:
        coefs: dict[int, float] = {}
        for c, nid in terms:
            node = self.nodes[nid]
            if isinstance(node, SumNode):  # fold: Σ c·(Σ d·x) = Σ (c·d)·x
                for d, child in node.terms:
                    coefs[child] = coefs.get(child, 0.0) + c * d
            else:
                coefs[nid] = coefs.get(nid, 0.0) + c
        items = sorted(coefs.items(), key=lambda kv: self.keys[kv[0]])
        if len(items) == 1 and items[0][1] == 1.0:
            return items[0][0]
        node = SumNode(tuple((c, nid) for nid, c in items))
        key = _digest("S", ",".join(f"{c!r}*{self.keys[nid]}" for nid, c in items))
        return self._node(node, key)

    def lse(self, children: list[int], offsets: list[float],
            labels: Sequence[str | tuple[int, str]] | None = None) -> int:
        """The log-sum-exp of ``children``. ``labels``: for an OR as written, each child's branch
        text, or (its place in the written order, text) where children and branches are not in
        written order (kept in :attr:`written_or`, carried onto the children of a child that is
        flattened in)."""
        tau = self.options.tau
        # (child, offset, ((which OR as written, its branch's place in it), text) or None)
        flat: list[tuple[int, float, tuple[tuple[int, int], str] | None]] = []
        ordinal = self._written_ors  # this OR's place among the ORs as written (when it is one)
        self._written_ors += labels is not None
        for i, (nid, off) in enumerate(zip(children, offsets)):
            node = self.nodes[nid]
            label = None
            if labels is not None:
                rank, text = labels[i] if isinstance(labels[i], tuple) else (i, labels[i])
                label = ((ordinal, rank), text)
            # lse(lse(a, b) − o, c) = lse(a − o, b − o, c). Wide children stay nested, so that
            # 10,000 nested ORs do not cost quadratic time (their energy is the same either way).
            if isinstance(node, LseNode) and node.tau == tau and len(node.children) <= FLATTEN_OR_LIMIT:
                inner = self.written_or.get(nid)
                flat.extend((c, o + off, label if labels is not None else (inner[j] if inner else None))
                            for j, (c, o) in enumerate(zip(node.children, node.offsets)))
            else:
                flat.append((nid, off, label))
        flat.sort(key=lambda co: (self.keys[co[0]], co[1]))
        node = LseNode(tuple(c for c, _, _ in flat), tuple(o for _, o, _ in flat), tau)
        key = _digest(f"X{tau!r}", ",".join(f"{self.keys[c]}-{o!r}" for c, o, _ in flat))
        nid = self._node(node, key)
        if any(lab is not None for _, _, lab in flat):
            self.written_or.setdefault(nid, tuple(lab or ((ordinal, len(flat)), "?") for _, _, lab in flat))
        return nid

    # -- lowering -------------------------------------------------------------------------------
    def lower_root(self, e: Expr, log_z: tuple[float, ...] | None = None) -> int:
        """The whole expression: its OR data-weighted where ``or_weights="data"`` applies
        (:mod:`conceptlang.compiler.or_weights`), else :meth:`lower` as written."""
        got = or_plan(e, self.refs, self.registry, self.domain, self.options) if log_z is None else None
        if isinstance(got, OrWeights):
            self.or_weights = got
            if got.two_objects:
                nid = self._expanded_objects(e)
                if nid is not None:
                    return nid
        if not isinstance(got, Plan):
            return self.lower(e, log_z)
        self.or_weights = got.record
        self._note_weighted_negations([e], deep=True)
        branches: list[int] = []
        offsets: list[float] = []
        before = len(self.enumerated)
        for k, (pinned, weight) in enumerate(got.branches):
            places = tuple(self._synthetic(t) if isinstance(t, ConceptRef) else t  # near several close points
                           for t in (got.places[k] if got.places else ()))
            weights = got.weights[k] if got.weights else {}
            grouped = got.grouped[k] if got.grouped else []
            kept = [(r, Weighted(weights[r.family], c) if r.family in weights else c)
                    for r, c in zip(pinned, map(self._synthetic, pinned))]
            compounds: list[Expr] = []
            for w, fams in grouped:  # a weighted compound: one weight on the values it pins together
                members = [c for r, c in kept if r.family in fams]
                kept = [(r, c) for r, c in kept if r.family not in fams]
                if members:
                    compounds.append(Weighted(w, members[0] if len(members) == 1 else And(tuple(members))))
            values = [c for _, c in kept] + compounds
            self._keep.extend(values)
            terms = tuple(got.other) + tuple(values) + tuple(places)
            nid = self.conjunction(terms)
            self.text.setdefault(nid, " & ".join(_wrap(t, 3) for t in terms))
            branches.append(nid)
            offsets.append(-math.log(weight))
        enumerated = self.enumerated[before:]
        if len(enumerated) > 1:  # one notice for the OR's branches, not one per branch
            del self.enumerated[before:]
            free = sorted({n.split(": free families ", 1)[1].split(" drawn", 1)[0] for n in enumerated})
            self.enumerated.append(
                f"{len(enumerated)} of the OR's {len(branches)} branches: their free families ({'; '.join(free)}) "
                "drawn as the data has them given the branch (free_families=data)")
        nid = branches[0] if len(branches) == 1 else self.lse(branches, offsets, got.groups)
        self.text.setdefault(nid, show(e))
        self._keep.append(e)
        return nid

    def _expanded_objects(self, e: Expr) -> int | None:
        """An OR in equal shares because a branch places two objects (``~yellow & (small & cyan |
        position(a) & position(b)) & (triangle | circle)``): the expression distributed over its
        ORs as written, nested ones and ones under weights included (:meth:`_disjuncts`), each
        disjunct lowered as one flat conjunction, so that an object-level disjunct draws its layout
        with the values beside its places (:meth:`_objects`); the disjuncts in equal shares, as the
        ORs lowered on the graph give them. None where a compound is under a weight ≤ 0 or the
        disjuncts would outgrow ``max_disjuncts``."""
        picks = self._disjuncts(e, self.options.max_disjuncts)
        if picks is None or len(picks) < 2:
            return None
        branches, labels = [], []
        for terms in picks:
            self._keep.extend(terms)
            nid = self.conjunction(terms)
            labels.append(" & ".join(_wrap(t, 3) for t in terms))
            self.text.setdefault(nid, labels[-1])
            branches.append(nid)
        nid = self.lse(branches, [0.0] * len(branches), labels)
        self.text.setdefault(nid, show(e))
        self._keep.append(e)
        return nid

    def _disjuncts(self, e: Expr, limit: int) -> list[tuple[Expr, ...]] | None:
        """``e`` distributed over its ORs: the conjunctions of terms (a concept or a negation, either
        under weights; a negated compound, ``~(circle & yellow)``, stays one term) whose OR it is, in
        the written order, a conjunction's negations read as :func:`push_negations` reads them under
        ``negation="complement"``. A weighted OR or conjunction (``w * (a | b & c)``) gives each of
        its disjuncts the weight on the disjunct as a whole, together (``w * (b & c)``), as a
        weighted conjunction is lowered. None where a weight ≤ 0 holds a compound, or there would be
        more than ``limit``."""
        w, inner = weight_of(e)
        if isinstance(inner, (Concept, Not)):  # a negated compound stays one term of its disjuncts
            return [(e,)]
        if w <= 0:
            return None
        if isinstance(inner, Or):
            out: list[tuple[Expr, ...]] = []
            for t in dict.fromkeys(flatten_and(inner.terms, Or)):
                got = self._disjuncts(t, limit)
                if got is None or len(out) + len(got) > limit:
                    return None
                out.extend(got)
        elif isinstance(inner, And):
            flat = flatten_and(inner.terms)
            if self.options.negation == "complement":
                flat = push_negations(flat)
            out = [()]
            for t in flat:
                got = self._disjuncts(t, limit)
                if got is None or len(out) * len(got) > limit:
                    return None
                out = [a + b for a in out for b in got]
        else:
            return None
        if w != 1.0:
            out = [(Weighted(w, d[0] if len(d) == 1 else And(d)),) for d in out]
        return out

    def lower(self, e: Expr, log_z: tuple[float, ...] | None = None) -> int:
        # Lowering depends only on the sub-tree and on whether complements apply there, so a shared
        # sub-tree (expanded definitions) is lowered once per context.
        ctx = (id(e), self._ratio_only > 0, self._in_product > 0)
        done = self._lowered.get(ctx)
        if done is not None and log_z is None:
            return done
        if isinstance(e, Concept) and self.options.free_families != "model" and not self._ratio_only \
                and not self._in_product:
            nid = self.conjunction((e,))
        elif isinstance(e, Concept) and self.weight(e) == 1.0:
            nid = self.leaf(self._named_near(self.refs[e], show(e)))
        elif isinstance(e, Or):
            offsets = list(log_z) if log_z is not None else [0.0] * len(e.terms)
            nid = self.lse([self.lower(t) for t in e.terms], offsets, [show(t) for t in e.terms])
        else:
            nid = self.conjunction(e.terms if isinstance(e, And) else (e,))
        if nid not in self.text:
            self.text[nid] = show(e)
        self._lowered[ctx] = nid
        self._keep.append(e)  # ids stay valid while the builder lives
        return nid

    def weight(self, e: Expr) -> float:
        """A concept's calibrated weight (the registry's optional ``concept_weight`` hook; 1 for
        anything else, or with ``concept_weights=False``): it multiplies the concept's coefficient
        wherever it appears, ``~c`` and ``w * c`` included."""
        hook = getattr(self.registry, "concept_weight", None)
        if hook is None or not self.options.concept_weights or not isinstance(e, Concept):
            return 1.0
        w = float(hook(self.refs[e]))
        if w != 1.0:
            self.calibrated[format_concept(e)] = w
        return w

    def _classify(self, t: Expr) -> tuple[float, Expr, bool]:
        """A conjunction term → (signed coefficient, the expression it scales, negated?)."""
        if isinstance(t, Not):
            return -self.options.alpha * self.weight(t.expr), t.expr, True
        if isinstance(t, Weighted):
            s, inner, neg = self._classify(t.expr)
            return t.weight * s, inner, neg
        return self.weight(t), t, False

    def _term(self, inner: Expr, coef: float = 1.0) -> int:
        """The node a conjunction term scales: a concept's own leaf (its weight is in the coefficient).
        A compound scaled by anything but 1 is lowered without complements (see ``_ratio_only``)."""
        if isinstance(inner, Concept):
            return self.leaf(self.refs[inner])
        ratio = coef != 1.0
        self._ratio_only += ratio
        self._in_product += 1
        try:
            return self.lower(inner)
        finally:
            self._ratio_only -= ratio
            self._in_product -= 1

    def conjunction(self, terms: tuple[Expr, ...]) -> int:
        # A parenthesised conjunction inside a conjunction is part of it: grounding is decided on
        # the whole, so (A & B) & C and A & (B & C) agree (A & (~B & ~C) takes no prior).
        flat = flatten_and(terms)
        saved, self._groups = self._groups, []
        try:
            if self.options.and_mode == "joint" and not self._ratio_only:
                flat = self._splice_weighted_groups(flat)
            if self.options.negation == "complement" and not self._ratio_only:
                flat = self._push_negations(flat)
                # a negatively weighted negation of a conjunction (`-1 * ~(a & b)`) leaves a weighted
                # conjunction: spliced too, its terms' negations pushed in turn
                while self.options.and_mode == "joint" and any(weighted_conjunction(t) is not None for t in flat):
                    before = {id(t) for t in flat}
                    spliced = self._splice_weighted_groups(flat)
                    flat = self._push_negations(spliced, [t for t in spliced if id(t) not in before])
            if self.options.free_families == "data" and not self._ratio_only and not self._in_product:
                nid = self._objects(flat)
                if nid is not None:
                    return nid
            if not self._ratio_only and (self.options.negation == "complement" or self.options.free_families != "model"):
                nid = self._expand(flat)
                if nid is not None:
                    return nid
            return self._product(flat)
        finally:
            self._groups = saved

    def _splice_weighted_groups(self, flat: list[Expr]) -> list[Expr]:
        """and_mode "joint": a positively weighted conjunction (``2 * (red & circle)``,
        ``0.5 * (male & ~smiling)``, ``2 * (position(0.3, 0.3) & red)``, ``1.5 * (triangle &
        ~(purple | green))``, two objects' ``2 * (position(a) & position(b) & red)``) is spliced
        into the conjunction, so that its concepts join the joint condition and the families it
        leaves free are drawn as for the unweighted conjunction; its weight w becomes one extra share (w − 1)·(E_g − E_prior) in each
        branch, E_g the joint condition on the group's values there, its place left out
        (:meth:`_group_shares`)."""
        out: list[Expr] = []
        for t in flat:
            got = weighted_conjunction(t)
            if got is None:
                out.append(t)
                continue
            w, parts = got
            out.extend(parts)
            if w != 1.0:
                families = {self.refs[c].family for p in parts for c in postorder(p) if isinstance(c, Concept)}
                self._groups.append((w, frozenset(families)))
                self._keep.extend(parts)
        return out

    def _push_negations(self, flat: list[Expr], new: list[Expr] | None = None) -> list[Expr]:
        """:func:`~conceptlang.compiler.or_weights.push_negations`, the new nodes kept alive (the
        builder caches lowered sub-trees by id), with a notice for the weights it drops among the
        terms ``new`` (all of ``flat`` when None; a second pass names only the groups it spliced)."""
        out = push_negations(flat)
        self._keep.extend(out)
        self._note_weighted_negations(flat if new is None else new)
        return out

    def _note_weighted_negations(self, terms, deep: bool = False) -> None:
        """A notice naming the weighted negations in ``terms`` (``2 * ~red``, ``-1 * red``,
        ``~(2 * red)``, ``~(small | 2 * circle)``) that are lowered as plain negations
        (negation="complement", and inside a data-weighted OR: :func:`dropped_weights`)."""
        dropped = list(dict.fromkeys(show(t) for t in dropped_weights(terms, deep)))
        if dropped:
            self.complement_skipped.append(
                f"{', '.join(dropped)}: a weighted negation is lowered as the negation, to the values where it "
                "holds, so the weight's magnitude has no effect")

    # -- complements of negations and enumeration of free families ------------------------------
    def _synthetic(self, ref: ConceptRef) -> Concept:
        """A concept node standing for ``ref`` (a complement value, a known-absent attribute printed
        ``young.none``, or a per-chain drawn family printed ``position.drawn``: no user-written name
        resolves to the last two, so they cannot collide)."""
        if ref.avoid:  # near its point(s) and away from others: both in the arguments
            c = Concept("drawn_avoiding", ref.family, args=tuple(ref.params or ()) + tuple(ref.avoid))
        else:
            c = Concept("none" if ref.absent else "away" if ref.away else "drawn" if ref.drawn else ref.value,
                        ref.family, args=tuple(ref.params) if ref.drawn and ref.params is not None else None)
        self.refs.setdefault(c, ref)
        return c

    def _absent_of(self, ref: ConceptRef) -> ConceptRef | None:
        hook = getattr(self.registry, "absent", None)
        return hook(ref) if hook is not None else None

    @staticmethod
    def _positive_concept(t: Expr) -> Concept | None:
        """The concept of a positive conjunction term: ``c``, or ``w * c`` with w > 0 (nested
        weights multiplied); None for anything else."""
        w, t = weight_of(t)
        return t if isinstance(t, Concept) and w > 0 else None

    def _joint_model_of(self, flat: list[Expr]) -> tuple[Any, list[ConceptRef], list[ConceptRef]] | None:
        """(model, positive refs, negated refs) when ``flat`` is concepts (``w * c`` with w > 0
        included) and single-concept negations, at least one positive and one value per family
        among those, the positive ones all served by one joint model (and_mode "joint"); else None
        (two objects, negative weights or compound terms: the free families stay the model's)."""
        if self.options.and_mode != "joint" or getattr(self.registry, "joint", None) is None:
            return None
        pos: list[ConceptRef] = []
        neg: list[ConceptRef] = []
        for t in flat:
            c = self._positive_concept(t)
            if c is not None:
                pos.append(self.refs[c])
            elif isinstance(t, Not) and isinstance(t.expr, Concept):
                neg.append(self.refs[t.expr])
            else:
                return None
        pos = list(dict.fromkeys(pos))  # a repeated concept is one value (`red & circle & red`)
        if not pos or len({r.family for r in pos}) != len(pos):
            return None
        model = self.registry.model_for(pos[0])[0]
        if any(self.registry.model_for(r)[0] is not model for r in pos):
            return None
        return model, pos, neg

    def _drawing_joint_model_of(self, flat: list[Expr]) -> tuple[Any, list[ConceptRef], list[ConceptRef]] | None:
        """:meth:`_joint_model_of`, where the registry can draw parameters per chain (``value_draws``)."""
        return self._joint_model_of(flat) if hasattr(self.registry, "value_draws") else None

    def _serves(self, model: Any, ref: ConceptRef) -> bool:
        try:
            return self.registry.model_for(ref)[0] is model
        except Exception:  # no model serves the family
            return False

    def _free_families(self, flat: list[Expr], taken: set[str]) -> list[tuple[str, list[str | None]]]:
        """free_families="data" or "discrete": the discrete families of the conjunction's joint
        model that it leaves free, each with the values to branch over (None: a yes/no attribute's
        absent value); empty unless :meth:`_joint_model_of` finds one joint model."""
        got = self._joint_model_of(flat)
        if got is None:
            return []
        model, pos, _ = got
        fams = {r.family for r in pos}
        out: list[tuple[str, list[str | None]]] = []
        for fam in self.registry.domain(self.domain).families:
            if fam.kind != "discrete" or fam.name in fams or fam.name in taken or not fam.values:
                continue
            if not self._serves(model, ConceptRef(self.domain, fam.name, value=fam.values[0])):
                continue
            vals = self._branch_values(fam)
            if vals is not None:
                out.append((fam.name, vals))
        return out

    def _branch_values(self, fam) -> list[str | None] | None:
        """The values a discrete family's branches take: every value of an exclusive family; a yes/no
        attribute's value and its known-absent value (None) where the model has one; else None."""
        if fam.kind != "discrete" or not fam.values:
            return None
        if len(fam.values) == 1:
            probe = ConceptRef(self.domain, fam.name, value=fam.values[0])
            return [fam.values[0], None] if self._absent_of(probe) is not None else None
        return list(fam.values) if fam.exclusive else None

    def _can_draw(self, family: str | tuple[str, ...], objects: int = 1) -> bool:
        """Whether the registry's ``value_draws`` hook draws ``family`` of this domain (a tuple:
        those discrete families together, for an object of ``objects``-object images); asked once."""
        key = (self.domain, family, objects)
        if key not in self._drawable:
            hook = getattr(self.registry, "value_draws", None)
            if hook is None:
                self._drawable[key] = False
            elif objects == 1:
                self._drawable[key] = hook(self.domain, family, {}, 1, 0) is not None
            else:
                try:
                    self._drawable[key] = hook(self.domain, family, {}, 1, 0, objects=objects) is not None
                except TypeError:  # a hook without ``objects``: it draws one-object families only
                    self._drawable[key] = False
        return self._drawable[key]

    def _drawn_families(self, terms: list[Expr]) -> list[ConceptRef]:
        """free_families="data": the continuous families (scenes ``position``) of the joint model
        serving ``terms`` (one branch) that no term names, each as a per-chain drawn reference:
        every chain gets its own parameters, drawn from the data given the branch's values when it
        is sampled (the registry's ``value_draws`` hook). Empty where the registry cannot draw them
        (own data) or :meth:`_joint_model_of` finds no joint model."""
        got = self._drawing_joint_model_of(terms)
        if got is None:
            return []
        model, pos, neg = got
        named = {r.family for r in pos + neg}
        out: list[ConceptRef] = []
        for fam in self.registry.domain(self.domain).families:
            ref = ConceptRef(self.domain, fam.name, drawn=True)
            if fam.kind != "continuous" or fam.name in named or not self._serves(model, ref):
                continue
            if self._can_draw(fam.name):
                out.append(ref)
        return out

    def _objects(self, flat: list[Expr]) -> int | None:
        """free_families="data" on an object-level composition (``position(a) & position(b)``:
        plain named places of one continuous family, each a different one, served by one joint
        model trained on that many objects per image): one joint leaf per object, conditioned on
        its value and on every discrete family of the model, each chain drawing those per object
        as an object of the data's images with that many objects has them (the registry's
        ``value_draws`` of a tuple of families); the product of the objects' leaves over the
        prior. None where that does not apply (the families then stay the model's).

        Plain values of other families beside the places (``position(a) & position(b) & red &
        triangle``: some object is red, some a triangle; ``2 * red`` too) and negated ones
        (``~yellow``: no object is yellow) apply where the registry draws whole layouts: each chain
        draws one in which they hold, its objects' leaves take their drawn values, and the plain
        values stay product terms as well, each with its written weight (a weighted conjunction
        spliced in: its extra share on each of its values); a negated place far from every place
        is implied by the layout and dropped; else None (a plain product, with a warning where the
        values are what no layout of the data holds)."""
        plan = self._object_plan(flat)
        if plan is None or not self._place_objects(plan, flat):
            return None
        terms: list[tuple[float, int]] = []
        for slot, (r, w) in enumerate(plan.places):
            leaf = (self._near(r) if plan.spread else r, *plan.drawn)
            got = self.registry.joint(leaf)
            if got is None or got[0] is not plan.model:
                return None
            cond = {**got[1], **{f.name: Drawn(values=tuple(f.values), objects=plan.k) for f in plan.fams}}
            if plan.layout:
                cond = {f: replace(v, layout=plan.layout, slot=slot, within=plan.within, some=plan.held,
                                   none=plan.none) if isinstance(v, Drawn) else v for f, v in cond.items()}
            terms.append((1.0, self.joint_leaf(leaf, plan.model, cond)))
            if w != 1.0:  # a weighted place: its extra share on the place alone, at the drawn point
                terms.append((w - 1.0, self.joint_leaf(leaf[:1], plan.model, {r.family: cond[r.family]})))
        # the values also stay product terms: a joint condition binds an object's values to it only
        # loosely, so the drawn values alone are not always rendered
        # a negated value is only kept off the objects' draws, with no term of its own
        extra = [(w, self.leaf(r)) for r, w in plan.values]
        # ``2 * (position(b) & circle)``: the share on circle only, as :meth:`_group_shares` gives
        extra += [(w - 1.0, self.leaf(r)) for w, families in self._groups
                  for r in dict.fromkeys(r for r, _ in plan.values if r.family in families)]
        nid = self.weighted_sum(terms + extra + [(1.0 - sum(w for w, _ in terms + extra), self.prior())])
        self._note_objects(plan, flat, nid)
        return nid

    def _object_plan(self, flat: list[Expr]) -> _ObjectPlan | None:
        """What :meth:`_objects` composes for the conjunction ``flat``: its places, values and
        negated values, the joint model and the discrete families it draws per object; None where
        the conjunction is no object-level composition the registry can draw."""
        negated = [t.expr for t in flat if isinstance(t, Not) and isinstance(t.expr, Concept)]
        plain = [(c, weight_of(t)[0]) for t in flat if (c := self._positive_concept(t)) is not None]
        if self.options.and_mode != "joint" or len(flat) < 2 or len(plain) + len(negated) != len(flat):
            return None
        places = [(self.refs[c], w) for c, w in plain if self.refs[c].params is not None]
        values = [(self.refs[c], w) for c, w in plain if self.refs[c].params is None]
        refs = [r for r, _ in places]
        # a negated place of the places' family (``~position(c)``): implied where the layout keeps
        # every object's centre out of its region, else no layout
        avoided = [t for t in negated if refs and self.refs[t].family == refs[0].family
                   and self.refs[t].params is not None and not self.refs[t].drawn]
        shunned = [self.refs[t] for t in negated if t not in avoided]
        if len(refs) < 2 or any(w <= 0 for _, w in places) \
                or any(self.weight(t) != 1.0 for t in [c for c, _ in plain] + negated) \
                or len({r.family for r in refs}) != 1 or len(set(refs)) != len(refs) \
                or any(r.value is None or r.absent or r.drawn or r.params is not None
                       for r in [r for r, _ in values] + shunned):
            return None
        hook = getattr(self.registry, "max_objects", None)
        if hook is None or getattr(self.registry, "joint", None) is None or hook(refs[0]) < len(refs):
            return None
        model = self.registry.model_for(refs[0])[0]
        if any(self.registry.model_for(r)[0] is not model for r in refs):
            return None
        fams = [f for f in self.registry.domain(self.domain).families
                if f.kind == "discrete" and f.name != refs[0].family and len(f.values) > 1
                and self._serves(model, ConceptRef(self.domain, f.name, value=f.values[0]))]
        if not fams or not self._can_draw(tuple(f.name for f in fams), len(refs)):
            return None
        return _ObjectPlan(places=places, values=values, avoided=avoided, model=model, fams=fams,
                           drawn=tuple(ConceptRef(self.domain, f.name, drawn=True) for f in fams),
                           held=tuple(dict.fromkeys((r.family, r.value) for r, _ in values)),
                           none=tuple(dict.fromkeys((r.family, r.value) for r in shunned)),
                           spread=self.options.named_positions == "data"
                           and all(self._spreadable(r, model) for r in refs))

    def _place_objects(self, plan: _ObjectPlan, flat: list[Expr]) -> bool:
        """Decide where ``plan``'s objects are drawn: with ``named_positions="data"``, whole
        layouts of the data's images, one object near each place, in which its held and negated
        values hold (``plan.layout`` and ``plan.within``); False where the conjunction then needs a
        layout the registry does not draw (values, weighted or negated places), with a warning
        where no layout of the data holds its values."""
        family, k = plan.refs[0].family, plan.k
        points = tuple(p for r in plan.refs for p in r.params)
        if plan.spread:
            plan.within = self._layout_radius(family, points, k, plan.names, plan.held, plan.none)
            plan.layout = points if plan.within is not None else ()
        values_drawn = all(f in plan.names for f, _ in plan.held + plan.none)
        if (plan.held or plan.none) and plan.spread and not plan.layout and values_drawn \
                and self._layout_radius(family, points, k, plan.names) is not None:
            values_text = " and ".join([f"{v} held by some object" for _, v in plan.held]
                                       + [f"{v} by none" for _, v in plan.none])
            self.no_layout.append(
                f"{' & '.join(show(t) for t in flat)}: the data's {k}-object images have no layout with an object "
                f"near each place and {values_text}, so it is a plain product, and its samples are unlikely to show it")
        weighted = any(w != 1.0 for _, w in plan.places)
        if (plan.held or plan.none or weighted or plan.avoided) and (not plan.layout or not values_drawn):
            return False
        return not any(math.dist(r.params, self.refs[t].params) <= plan.within + POSITION_TOLERANCE
                       for t in plan.avoided for r in plan.refs)

    def _note_objects(self, plan: _ObjectPlan, flat: list[Expr], nid: int) -> None:
        """Record what :meth:`_objects` drew for ``flat`` (lowered to node ``nid``): the dropped
        negated places as groundings, the drawn families as notices."""
        self.groundings.extend(
            Grounding(negated=show(t), grounded_by="", positive="", alpha=0.0, node=nid, how="implied",
                      detail=f"the layout (each object within {plan.within:g} of its place, every place farther "
                             f"than {plan.within + POSITION_TOLERANCE:g} from this one)") for t in plan.avoided)
        conj = " & ".join(show(t) for t in flat)
        family, k, names = plan.refs[0].family, plan.k, ", ".join(plan.names)
        if plan.layout:
            wider = "" if plan.within == self._radius() else \
                f" (none has one within {self._radius():g}: wider, where the place holds)"
            some = f", {' and '.join(v for _, v in plan.held)} held by some object" if plan.held else ""
            some += f", {' and '.join(v for _, v in plan.none)} by none" if plan.none else ""
            self.drawn.append((conj, f"the objects' {family} and {names}",
                               f"together, as the data's {k}-object images with an object within {plan.within:g} "
                               f"of each point{some} have them{wider} (free_families=data, named_positions=data)"))
            return
        self.drawn.append((conj, f"{names} of each object",
                           f"as an object of the data's {k}-object images has them (free_families=data)"))
        if plan.spread:
            self.drawn.append((conj, f"each object's {family}",
                               f"where it holds (within {self._radius():g} of its point; named_positions=data), "
                               f"on its own: the registry draws no layout of the data's {k}-object images with "
                               f"an object within {max(self._radius(), near_radius(None)):g} of each point (places "
                               "closer than its objects lie, or no such images)"))

    def _layout_radius(self, family: str, points: tuple[float, ...], k: int, names: tuple[str, ...],
                       held: tuple[tuple[str, str], ...] = (), none: tuple[tuple[str, str], ...] = ()) -> float | None:
        """The radius within which the registry's ``value_draws`` hook draws whole layouts of ``k``
        objects, one near each of the places of ``family`` at ``points`` (one after another), with
        their values of ``names``, the values ``held`` ((family, value) pairs) each held by some
        object and those in ``none`` by none (an object-level composition's objects drawn
        together): the named radius, else the language's tolerance, where each place holds (two
        places closer than the data's objects lie near the named radius); None where it draws
        none."""
        hook = getattr(self.registry, "value_draws", None)
        if hook is None:
            return None
        for radius in dict.fromkeys((self._radius(), max(self._radius(), near_radius(None)))):
            try:
                got = hook(self.domain, (family, *names), held_values(held), 1, 0, near=points,
                           radius=radius, objects=k, **({"excluded": held_values(none)} if none else {}))
            except TypeError:  # a hook without these arguments draws no layouts
                return None
            if got is not None:
                return radius
        return None

    def _radius(self) -> float:
        """The radius named positions are drawn within (``named_radius``, else the language's tolerance)."""
        return near_radius(self.options.named_radius)

    def _named_near(self, ref: ConceptRef, where: str) -> ConceptRef:
        """named_positions="data" in the sum and product modes (separate factor models; the joint
        mode spreads a conjunction's named positions in :meth:`_expand`): a named continuous
        concept's drawn-near reference, each chain drawing its point where the concept holds, when
        the registry can draw the family and its model takes a drawn condition; else ``ref``.
        Positive terms only, outside ratio-only sub-expressions."""
        if self.options.named_positions != "data" or self.options.and_mode == "joint" or self._ratio_only \
                or not self._spreadable(ref, self.registry.model_for(ref)[0]):
            return ref
        note = (where, ref.qualified, f"where it holds (within {self._radius():g} of the point; named_positions=data)")
        if note not in self.drawn:
            self.drawn.append(note)
        return self._near(ref)

    def _spreadable(self, ref: ConceptRef, model: Any) -> bool:
        """Whether ``ref`` is a named continuous concept (``position(x, y)``) that the registry can
        draw near its point and ``model`` takes as a drawn-near condition."""
        return ref.params is not None and not ref.drawn and self._can_draw(ref.family) \
            and self._serves(model, self._near(ref))

    def _near(self, ref: ConceptRef, avoid: tuple[float, ...] = ()) -> ConceptRef:
        """``ref``'s named parameters as a drawn-near reference (``position(drawn near x, y)``), kept
        away from the points of ``avoid`` (one after another) where given."""
        return ConceptRef(self.domain, ref.family, params=tuple(ref.params), drawn=True, avoid=tuple(avoid))

    def _spread_named(self, rest: list[Expr], close: dict[ConceptRef, list[Expr]] | None = None
                      ) -> tuple[list[Expr], list[tuple[ConceptRef, ConceptRef]]]:
        """named_positions="data": ``rest`` with each named continuous concept (``position(x, y)``)
        that the registry can draw replaced by its drawn-near reference (``position(drawn near x,
        y)``: each chain drawn from the data where the point holds), and (named, drawn-near) pairs.
        ``close``: a named place → the negations of places close to it among ``rest``
        (``~position(b)``, ``b`` within twice the tolerance of the place): where the place is
        spread they leave ``rest`` and its draws keep away from their points instead (where the
        place holds and they do not), when the model takes such a condition."""
        got = self._drawing_joint_model_of(rest)
        if got is None:
            return rest, []
        model = got[0]
        out: list[Expr] = []
        spread: list[tuple[ConceptRef, ConceptRef]] = []
        gone: set[int] = set()
        for t in rest:
            c = self._positive_concept(t)  # `position(x, y)`, or `2 * position(x, y)`: its weight kept
            ref = self.refs.get(c) if c is not None else None
            if ref is None or not self._spreadable(ref, model):
                out.append(t)
                continue
            drawn = self._near(ref)
            negs = (close or {}).get(ref, [])
            if negs:
                avoiding = self._near(ref, tuple(p for n in negs for p in self.refs[n.expr].params))
                if self._serves(model, avoiding):
                    drawn = avoiding
                    gone.update(id(n) for n in negs)
            near = self._synthetic(drawn)
            if t is not c:
                near = Weighted(self._classify(t)[0] / self.weight(c), near)
                self._keep.append(near)
            out.append(near)
            spread.append((ref, drawn))
        return [t for t in out if id(t) not in gone], spread

    def _expand(self, flat: list[Expr]) -> int | None:
        """``flat``'s conjunction as an lse over one product per combination of values (or one
        product): single-concept negations lowered to complements (negation="complement") and
        the families it leaves free enumerated (free_families="data"); None when neither applies."""
        dom = self.registry.domain(self.domain)
        pos_refs: list[ConceptRef] = [self.refs[c] for c in map(self._positive_concept, flat) if c is not None]
        negs: dict[str, list[tuple[int, ConceptRef]]] = {}  # family → (term index, negated ref)
        compound: list[int] = []  # term indices of negated compounds (`~(red | green)`)
        places: dict[str, list[tuple[int, ConceptRef]]] = {}  # continuous family → (term index, negated ref)
        if self.options.negation == "complement":
            for k, t in enumerate(flat):
                if isinstance(t, Not) and isinstance(t.expr, Concept):
                    r = self.refs[t.expr]
                    if r.value is not None:
                        negs.setdefault(r.family, []).append((k, r))
                    elif r.params is not None and not r.drawn:
                        places.setdefault(r.family, []).append((k, r))
                elif isinstance(t, Not):
                    compound.append(k)
        drop: set[int] = set()  # term indices replaced
        extra: list[ConceptRef] = []  # known-absent refs, one per negated yes/no attribute
        free: list[tuple[str, list[str | None]]] = []  # complemented families: (family, allowed values)
        notes: list[Grounding] = []
        for fam_name, items in negs.items():
            try:
                fam = dom.family(fam_name)
            except Exception:  # a registry whose domain lacks the family: keep the ratio form
                continue
            if fam.kind != "discrete":
                continue
            negated = {r.value for _, r in items}
            given = [r for r in pos_refs if r.family == fam_name]
            if len(fam.values) == 1:  # a yes/no attribute: ~a is its known-absent value
                absent = self._absent_of(items[0][1])
                if absent is None or given:
                    continue
                extra.append(absent)
                drop.update(k for k, _ in items)
                notes.append(Grounding(negated=_wrap(flat[items[0][0]].expr, 4), grounded_by="", positive="",
                                       alpha=0.0, how="absent", detail=f"{fam_name}=<none>"))
                continue
            if not fam.exclusive:
                continue
            if given:  # a positive value of the family: ~v is implied (or contradicts; then keep the ratio)
                if all(g.value not in negated for g in given):
                    drop.update(k for k, _ in items)
                    for k, _ in items:
                        notes.append(Grounding(negated=_wrap(flat[k].expr, 4), grounded_by="", positive="",
                                               alpha=0.0, how="implied",
                                               detail=" & ".join(g.value for g in given) + " (one value per exclusive family)"))
                continue
            allowed: list[str | None] = [v for v in fam.values if v not in negated]
            if not allowed:
                continue
            free.append((fam_name, allowed))
            drop.update(k for k, _ in items)
        # negated compounds over discrete values: the combinations of their families where they do not hold
        cfree, excluded = self._compound_complements(flat, compound, pos_refs, extra, {f for f, _ in free})
        drop.update(k for k, _, _ in excluded)
        # a negated named place (`~position(0.5, 0.5)`): each chain's place drawn where it does not hold
        # (several: each chain's place drawn where none holds; beside a named place of the family
        # whose disc lies outside the negated one's, the negation is implied)
        away: list[ConceptRef] = []
        close: dict[ConceptRef, list[Expr]] = {}  # a named place → the negated places close to it
        for fam_name, items in places.items():
            named = [r for r in pos_refs if r.family == fam_name and r.params is not None]
            if named:
                if len(named) == 1:
                    for k, r in items:
                        if places_apart(named[0].params, r.params):
                            drop.add(k)
                            notes.append(Grounding(negated=_wrap(flat[k].expr, 4), grounded_by="", positive="",
                                                   alpha=0.0, how="implied",
                                                   detail=f"{named[0].qualified} (no point is within the tolerance of both)"))
                        elif not named[0].drawn:  # the named place's draws may keep away from it
                            close.setdefault(named[0], []).append(flat[k])
                continue
            if self._in_product or any(r.family == fam_name for r in pos_refs):
                continue
            r = items[0][1]
            points = list(dict.fromkeys(tuple(q.params) for _, q in items))  # a place negated twice: once
            ref = ConceptRef(self.domain, r.family, params=tuple(p for q in points for p in q), drawn=True,
                             away=True, points=len(points))
            if not self._can_draw(r.family) or not self._serves(self.registry.model_for(r)[0], ref):
                continue
            away.append(ref)
            drop.update(k for k, _ in items)
            where = "the point" if ref.points == 1 else f"each of the points ({ref.points_text()})"
            for k, _ in items:
                notes.append(Grounding(negated=_wrap(flat[k].expr, 4), grounded_by="", positive="", alpha=0.0,
                                       how="away",
                                       detail=f"farther than {away_radius(self.options.named_radius):g} from {where}"))
        rest = [t for k, t in enumerate(flat) if k not in drop] + [self._synthetic(r) for r in extra + away]
        spread: list[tuple[ConceptRef, ConceptRef]] = []
        if self.options.named_positions == "data" and self.options.free_families == "data" and not self._in_product:
            rest, spread = self._spread_named(rest, close)
            for named, r in spread:
                for n in close.get(named, []) if r.avoid else []:
                    notes.append(Grounding(negated=_wrap(n.expr, 4), grounded_by="", positive="", alpha=0.0,
                                           how="avoid",
                                           detail=f"{named.qualified}: within {self._radius():g} of it "
                                                  f"and farther than {away_radius(self.options.named_radius):g} "
                                                  "from this point"))
        enum: list[tuple[str, list[str | None]]] = []
        if self.options.free_families != "model" and not self._in_product and self.enumerate_free:
            taken = {f for f, _ in free + cfree} | {r.family for r in extra}
            # a bare complement (`~red`) has no positive concept to find the joint model by: one of
            # its values stands in (its family is taken, so it is not enumerated twice)
            anchor = [] if any(self._positive_concept(t) is not None for t in rest) else [
                self._synthetic(ConceptRef(self.domain, f, value=vals[0]))
                for f, vals in (free + cfree)[:1] if vals[0] is not None]
            enum = self._free_families(rest + anchor, taken)
        given = pos_refs + extra + away
        fixed: dict[str, str | None] = {r.family: r.value for r in pos_refs if r.value is not None}
        fixed.update({r.family: None for r in extra})

        def allowed_combos(fams: list[tuple[str, list[str | None]]]) -> list[tuple]:
            names = [f for f, _ in fams]
            return [c for c in itertools.product(*[vals for _, vals in fams])
                    if not any(self._holds(phi, {**fixed, **dict(zip(names, c))}) for _, phi, _ in excluded)]

        fams = free + cfree + enum
        combos = allowed_combos(fams)
        if not combos:  # the negations exclude every combination (unsatisfiable): the ratio form stays
            return None
        shares, source = self._shares([f for f, _ in fams], combos, given)
        if enum and (source != "data" or sum(s > 0 for s in shares) > self.options.max_disjuncts):
            # without the data's shares (or too many branches) the free families stay the model's
            if source == "data":
                self.complement_skipped.append(
                    f"{' & '.join(show(t) for t in flat)}: its free families would make more than "
                    f"max_disjuncts = {self.options.max_disjuncts} branches, so they are left to the model")
            enum, fams = [], free + cfree
            combos = allowed_combos(fams)
            shares, source = self._shares([f for f, _ in fams], combos, given)
        drawn: list[ConceptRef] = []
        if self.options.free_families == "data" and not self._in_product and combos:
            first = [self._synthetic(ConceptRef(self.domain, f, value=v)) for (f, _), v in zip(fams, combos[0])
                     if v is not None]
            drawn = self._drawn_families(rest + first)
        if not drop and not enum and not drawn and not spread:
            return None
        if sum(s > 0 for s in shares) > self.options.max_disjuncts:
            self.complement_skipped.append(
                f"{' & '.join(show(t) for t in flat)}: its complements would make {len(combos)} branches "
                f"(more than max_disjuncts = {self.options.max_disjuncts}), so its negations keep the ratio form")
            return None
        branches: list[int] = []
        offsets: list[float] = []
        for combo, share in zip(combos, shares):
            if share <= 0.0:  # the data never has this combination: no branch
                continue
            vals = []
            for (f, _), v in zip(fams, combo):
                probe = ConceptRef(self.domain, f, value=v if v is not None else dom.family(f).values[0])
                vals.append(self._synthetic(probe if v is not None else self._absent_of(probe)))
            terms = rest + vals + [self._synthetic(r) for r in drawn]
            nid = self._product(terms)
            self.text.setdefault(nid, " & ".join(_wrap(t, 3) for t in terms))
            branches.append(nid)
            offsets.append(-math.log(share))
        how = "shares: the data's, given the rest of the conjunction" if source == "data" else "equal shares"
        if free:
            names = [_wrap(flat[k].expr, 4) for f, _ in free for k, _ in negs[f]]
            parts = []
            for j, (f, vals) in enumerate(free):
                marg = {v: 0.0 for v in vals}
                for combo, share in zip(combos, shares):
                    marg[combo[j]] += share
                parts.append(f"{f}: " + ", ".join(f"{v} {marg[v]:.3f}" for v in vals if marg[v] > 0))
            notes.append(Grounding(negated=", ~".join(names), grounded_by="", positive="", alpha=0.0,
                                   how="complement", detail="over " + "; ".join(parts) + f" ({how})"))
        for k, _, names in excluded:
            cols = [j for j, (f, _) in enumerate(fams) if f in names]
            kept = len({tuple(c[j] for j in cols) for c, sh in zip(combos, shares) if sh > 0})
            notes.append(Grounding(negated=_wrap(flat[k].expr, 4), grounded_by="", positive="", alpha=0.0,
                                   how="complement",
                                   detail=f"over the combinations of {', '.join(sorted(names))} where it does not "
                                          f"hold ({kept} with data; {how})"))
        if enum:
            self.enumerated.append(
                f"{' & '.join(show(t) for t in flat)}: free families {', '.join(f for f, _ in enum)} drawn as "
                f"the data has them given the rest (free_families=data): {sum(s > 0 for s in shares)} branches")
        conj = " & ".join(show(t) for t in flat)
        for r in away:
            what = "the point does not hold" if r.points == 1 else "none of the points holds"
            negated = " & ".join(f"~{r.family}({', '.join(map(repr, q))})" for q in r.point_groups())
            self.drawn.append((conj, f"{r.family} ({negated})",
                               f"where {what} (farther than {away_radius(self.options.named_radius):g} "
                               f"from {'it' if r.points == 1 else 'each'}), given the branch (negation=complement)"))
        for named, r in spread:
            if r.avoid:
                others = " or ".join(f"{r.family}({q})" for q in r.avoid_text().split("; "))
                self.drawn.append((conj, named.qualified,
                                   f"where it holds (within {self._radius():g} of the point) and not within "
                                   f"{away_radius(self.options.named_radius):g} of {others}, given the branch "
                                   "(named_positions=data, negation=complement)"))
                continue
            self.drawn.append((conj, named.qualified, f"where it holds (within {self._radius():g} of the point), "
                                                      "given the branch (named_positions=data)"))
        if drawn:
            self.drawn.append((conj, ", ".join(r.family for r in drawn),
                               "as the data has it given the branch (free_families=data)"))
        nid = branches[0] if len(branches) == 1 else self.lse(branches, offsets)
        self.groundings.extend(replace(g, node=nid) for g in notes)
        # the ratio-form negations left among `rest` were recorded by _product
        return nid

    def _holds(self, e: Expr, values: dict[str, str | None]) -> bool:
        """Whether a compound of discrete concepts holds where each family has the given value
        (None: a yes/no attribute absent)."""
        if isinstance(e, Concept):
            r = self.refs[e]
            return r.family in values and values[r.family] == r.value
        if isinstance(e, Not):
            return not self._holds(e.expr, values)
        if isinstance(e, Weighted):  # the sign carries the meaning
            return self._holds(e.expr, values) != (e.weight < 0)
        if isinstance(e, And):
            return all(self._holds(t, values) for t in e.terms)
        return any(self._holds(t, values) for t in e.terms)

    def _compound_complements(self, flat: list[Expr], compound: list[int], pos_refs: list[ConceptRef],
                              extra: list[ConceptRef], taken: set[str],
                              ) -> tuple[list[tuple[str, list[str | None]]], list[tuple[int, Expr, list[str]]]]:
        """negation="complement" on negated compounds (``~(red | green)``, ``~(circle & red)``):
        those whose concepts are all values of exclusive discrete families, or of yes/no attributes
        with a known-absent value, become the mixture over the combinations of those families where
        the compound does not hold. Returns the families to branch over (those neither named by a
        positive concept nor already complemented, each with every value; None: absent) and the
        (term index, compound, its families) of those lowered so; the others keep the ratio form."""
        dom = self.registry.domain(self.domain)
        fixed = {r.family for r in pos_refs} | {r.family for r in extra}
        values: dict[str, list[str | None]] = {}
        excluded: list[tuple[int, Expr, list[str]]] = []
        for k in compound:
            phi = flat[k].expr
            names = value_families(phi, self.refs, dom)
            if not names or any(len({r for r in pos_refs if r.family == n}) > 1 for n in names):
                continue
            mine = {n: self._branch_values(dom.family(n)) for n in names}
            if any(v is None for v in mine.values()):
                continue
            excluded.append((k, phi, names))
            for name, vals in mine.items():
                if name not in fixed and name not in taken:
                    values.setdefault(name, vals)
        return list(values.items()), excluded

    def _shares(self, families: list[str], combos: list[tuple], given: list[ConceptRef]) -> tuple[list[float], str]:
        """Each combination's share, normalised over ``combos``, and where it came from: the data's
        given the positive concepts (registry hook ``value_shares``; "data"), else equal ("equal")."""
        hook = getattr(self.registry, "value_shares", None)
        got = hook(self.domain, tuple(families), tuple(given)) if (hook is not None and families) else None
        if got:
            raw = [float(got.get(c, 0.0)) for c in combos]
            total = sum(raw)
            if total > 0.0:
                return [v / total for v in raw], "data"
        return [1.0 / len(combos)] * len(combos), "equal"

    def _product(self, flat: list[Expr]) -> int:
        """One product of experts over the (flattened) conjunction terms, negations in the ratio form."""
        classified = [(t, *self._classify(t)) for t in flat]
        positive = [t for t, s, _, neg in classified if s > 0 and not neg]
        negated = any(neg or s < 0 for _, s, _, neg in classified)
        pos_text = " & ".join(_wrap(t, PRECEDENCE[Not]) for t in positive) if positive and negated else ""
        out: list[tuple[float, int]] = []
        mine: list[Grounding] = []
        joint, absorbed, repeats = self._joint_terms(classified) if self.options.and_mode == "joint" else ({}, set(), set())
        conj = " & ".join(show(t) for t in flat)
        for k, (t, s, inner, neg) in enumerate(classified):
            if k in repeats:  # a concept already in a joint leaf, again: its whole weight beside it
                self.repeated = True
                if not self.repeats_once:
                    out.append((s, self._term(inner, s)))
                continue
            if k in joint or k in absorbed:
                if k in joint:
                    out.append((1.0, joint[k]))
                if s != 1.0:  # a weighted concept in a joint leaf: its extra (s − 1)·(E_c − E_prior)
                    out.append((s - 1.0, self._term(inner, s)))
                continue
            if isinstance(inner, Concept) and not neg and s > 0:
                out.append((s, self.leaf(self._named_near(self.refs[inner], conj))))
            else:
                out.append((s, self._term(inner, s)))
            if neg or s < 0:
                mine.append(Grounding(
                    negated=_wrap(inner, PRECEDENCE[Not]) if neg else show(t),
                    grounded_by="positive part" if positive else "prior",
                    positive=pos_text if positive else f"{self.domain} prior",
                    alpha=self.options.alpha if neg else -s,
                    child=out[-1][1],
                ))
        out.extend(self._group_shares(classified))
        if self.options.and_mode in ("product", "joint"):
            prior_coef = 1.0 - sum(s for s, _ in out)
            if prior_coef != 0.0:
                out.append((prior_coef, self.prior()))
        elif not positive:
            out.append((1.0, self.prior()))
        nid = self.weighted_sum(out)
        self.groundings.extend(replace(g, node=nid) for g in mine)
        return nid

    def _group_shares(self, classified) -> list[tuple[float, int]]:
        """The extra shares of the weighted conjunctions spliced into this product
        (:meth:`_splice_weighted_groups`): (w − 1, the joint leaf of the branch's positive values of
        the group's discrete families); none where the registry has no joint leaf for them. A named
        place of the group is drawn per chain like an unweighted one and takes no share."""
        out: list[tuple[float, int]] = []
        for w, families in self._groups:
            refs = {self.refs[inner] for _t, s, inner, neg in classified
                    if isinstance(inner, Concept) and not neg and s > 0
                    and self.refs[inner].family in families and self.refs[inner].params is None}
            if len(refs) == 1:
                nid = self.leaf(next(iter(refs)))
            else:
                nid = self._joint_of(refs) if refs and len({r.family for r in refs}) == len(refs) else None
            if nid is not None:
                out.append((w - 1.0, nid))
        return out

    def _joint_terms(self, classified) -> tuple[dict[int, int], set[int], set[int]]:
        """and_mode "joint": the positive concepts of a conjunction (any positive weight) that one
        model can score together (the registry's optional ``joint`` hook) → one joint leaf each group.

        Returns {index of a group's first term: joint leaf node}, the indices of the other members
        (absorbed) and of later occurrences of a member (repeats: ``red & circle & red`` scores as
        ``2 * red & circle``). Concepts are grouped by the model that serves them; a family with two
        values (``position(a) & position(b)``: two objects) is left out of the group, since one
        condition holds one value per family, and so is a concept that also occurs negated.
        """
        hook = getattr(self.registry, "joint", None)
        if hook is None:
            return {}, set(), set()
        occurrences: dict[ConceptRef, list[int]] = {}
        positive: dict[ConceptRef, bool] = {}
        for k, (_t, s, inner, neg) in enumerate(classified):
            if isinstance(inner, Concept):
                ref = self.refs[inner]
                occurrences.setdefault(ref, []).append(k)
                positive[ref] = positive.get(ref, True) and not neg and s > 0
        # any positive weight (a calibrated concept, ``w * c``): it joins, and the caller adds its
        # extra share (s − 1)·(E_c − E_prior) beside the joint leaf
        single: dict[ConceptRef, int] = {ref: ks[0] for ref, ks in occurrences.items() if positive[ref]}
        groups: dict[int, list[tuple[ConceptRef, int]]] = {}
        for ref, k in single.items():
            model, _ = self.registry.model_for(ref)
            groups.setdefault(id(model), []).append((ref, k))
        joint: dict[int, int] = {}
        absorbed: set[int] = set()
        repeats: set[int] = set()
        for members in groups.values():
            families = [r.family for r, _ in members]
            members = [(r, k) for r, k in members if families.count(r.family) == 1]
            if len(members) < 2:
                continue
            nid = self._joint_of(r for r, _ in members)
            if nid is None:
                continue
            idx = sorted(k for _, k in members)
            joint[idx[0]] = nid
            absorbed.update(idx[1:])
            for r, _ in members:
                repeats.update(occurrences[r][1:])
        return joint, absorbed, repeats

    # -- DNF ------------------------------------------------------------------------------------
    def has_lse(self, nid: int) -> bool:
        hit = self._has_lse.get(nid)
        if hit is None:
            node = self.nodes[nid]
            if isinstance(node, LseNode):
                hit = True
            elif isinstance(node, SumNode):
                hit = False
                for _, c in node.terms:  # a loop, not any(): deep graphs must not recurse in C
                    if self.has_lse(c):
                        hit = True
                        break
            else:
                hit = False
            self._has_lse[nid] = hit
        return hit


class NotExpandable(Exception):
    """The expression has no exact DNF mixture (or too large a one); the message says why."""


@dataclass
class _Part:
    coefs: dict[int, float]
    log_weight: float
    choices: tuple[str, ...]
    # the branches of the ORs as written chosen on the way: ((which OR, which branch), text)
    groups: tuple[tuple[tuple[int, int], str], ...] = ()


def expand_dnf(b: GraphBuilder, root: int, max_disjuncts: int) -> list[Disjunct]:
    """The root's exact mixture of products of experts, or NotExpandable.

    exp(−E) factorises over a sum's terms; a term that is a log-sum-exp with coefficient exactly 1
    and τ = 1 is a sum of exp(−E_i − log Z_i), so the product distributes into a sum of products —
    one disjunct per combination of branches, weighted by exp(−Σ log Z)."""

    def go(nid: int) -> list[_Part]:
        node = b.nodes[nid]
        if isinstance(node, LeafNode):
            return [_Part({node.leaf: 1.0}, 0.0, ())]
        if isinstance(node, LseNode):
            if node.tau != 1.0:
                raise NotExpandable(f"τ = {node.tau:g} ≠ 1, so the OR is not a mixture of its branches")
            out: list[_Part] = []
            written = b.written_or.get(nid)  # an OR as written: its branch replaces any nested one's
            for i, (child, off) in enumerate(zip(node.children, node.offsets)):
                for p in go(child):
                    groups = (written[i],) if written is not None else p.groups
                    out.append(_Part(p.coefs, p.log_weight - off, (b.text.get(child, "?"),) + p.choices, groups))
                    if len(out) > max_disjuncts:
                        raise NotExpandable(f"the disjunctive normal form has more than {max_disjuncts} disjuncts")
            return out
        parts = [_Part({}, 0.0, ())]
        for c, child in node.terms:
            sub = go(child)
            if b.has_lse(child) and c != 1.0:
                raise NotExpandable(
                    f"{b.text.get(child, 'an OR')!r} enters with weight {c:g} (negated or weighted), "
                    "which is not a mixture")
            if len(parts) * len(sub) > max_disjuncts:
                raise NotExpandable(f"the disjunctive normal form has more than {max_disjuncts} disjuncts")
            new = []
            for p, q in itertools.product(parts, sub):
                coefs = dict(p.coefs)
                for leaf, v in q.coefs.items():
                    coefs[leaf] = coefs.get(leaf, 0.0) + c * v
                new.append(_Part(coefs, p.log_weight + q.log_weight, p.choices + q.choices, p.groups + q.groups))
            parts = new
        return parts

    parts = go(root)
    n = len(b.leaves)
    m = max(p.log_weight for p in parts)
    weights = [math.exp(p.log_weight - m) for p in parts]
    total = sum(weights)
    out = []
    for p, w in zip(parts, weights):
        coefs = tuple(p.coefs.get(i, 0.0) for i in range(n))
        text = " & ".join(p.choices) if p.choices else b.text.get(root, "")
        chosen = sorted(p.groups)  # the ORs in the order they were written
        out.append(Disjunct(coefs, p.log_weight, text, w / total, group=" & ".join(t for _, t in chosen) or None,
                            group_rank=tuple(i for (_, i), _ in chosen)))
    return out


def check_log_z(expr: Expr, options: CompileOptions) -> tuple[float, ...] | None:
    if isinstance(options.log_z, str):
        return None
    if not isinstance(expr, Or):
        raise CompileError("log_z values were given but the expression is not an OR at the top level")
    if len(options.log_z) != len(expr.terms):
        raise CompileError(f"log_z has {len(options.log_z)} value(s) but the top-level OR has "
                           f"{len(expr.terms)} branches")
    return tuple(options.log_z)
