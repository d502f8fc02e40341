"""The energy graph: a DAG of shared (model, condition) leaves, weighted sums and log-sum-exps.

Evaluation is organised by *model*, not by leaf: every model is called once per evaluation with
the conditions of all its leaves stacked into one batch (x repeated per leaf). That batching is
the reason for compiling instead of interpreting the AST (docs/design.md, "The energy graph").

Two evaluation routes share the leaf batching:

* the DAG route (:meth:`EnergyGraph.energy`): every leaf for every chain, then the inner nodes —
  the full semantics, log-sum-exp ORs included;
* the linear route (:meth:`EnergyGraph.linear_energy` / :meth:`linear_score`): each chain carries
  its own coefficient row over the leaves (one DNF disjunct per chain), and only the (chain, leaf)
  pairs with a non-zero coefficient are evaluated.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch

from conceptlang.compiler.nodes import Disjunct, Grounding, Leaf, LeafNode, LseNode, Node, SumNode
from conceptlang.interface import ConceptModel, Drawn


def _drawn_value(drawn: Drawn, row: torch.Tensor) -> Any:
    """One chain's draw as a condition value: a discrete family's value name (from its index), a
    continuous family's parameters as a tuple of floats."""
    if drawn.values is None:
        return tuple(float(p) for p in row)
    return drawn.values[int(row[0])]


def linear_coefficients(nodes: Sequence[Node], root: int, n_leaves: int) -> tuple[float, ...] | None:
    """The node ``root`` as Σ coef · leaf (one coefficient per leaf) when nothing under it is a
    log-sum-exp, else None."""
    coefs = [0.0] * n_leaves

    def walk(nid: int, scale: float) -> bool:
        node = nodes[nid]
        if isinstance(node, LeafNode):
            coefs[node.leaf] += scale
            return True
        if isinstance(node, SumNode):
            return all(walk(child, scale * c) for c, child in node.terms)
        return False

    return tuple(coefs) if walk(root, 1.0) else None


class EnergyGraph:
    """A compiled expression. Build with :func:`conceptlang.compiler.compile`, not directly.

    ``cpu_chunk_values``: on the CPU, each model's stacked batch is pushed through the network in
    slices of at most this many input values (8 RGB 32×32 images; None: one call): the activations
    of small slices stay in cache, which makes a convolutional network faster on the CPU than one
    call on the whole batch. Tiny inputs (the analytic 2-D models) still go in one call, and on
    accelerators the whole stacked batch always does. The result is the same either way.
    """

    cpu_chunk_values: int | None = 8 * 3 * 32 * 32

    def __init__(
        self,
        *,
        expression: str,
        domain: str,
        leaves: Sequence[Leaf],
        nodes: Sequence[Node],
        root: int,
        node_text: dict[int, str],
        groundings: Sequence[Grounding],
        disjuncts: Sequence[Disjunct] | None,
        route: str,
        notices: Sequence[str],
        options: dict[str, Any],
        sampler_settings: dict[str, Any],
        expr: Any = None,
        refs: dict | None = None,
        model_set: dict | None = None,
        or_weights: Any = None,
        drawer: Any = None,
        weights_above: float | None = None,
        low_linear: Sequence[float] | None = None,
        finish: tuple[ConceptModel, float] | None = None,
    ):
        self.expression = expression
        self.domain = domain
        self.leaves: tuple[Leaf, ...] = tuple(leaves)
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.root = root
        self.node_text = dict(node_text)
        self.groundings: tuple[Grounding, ...] = tuple(groundings)
        self.disjuncts: tuple[Disjunct, ...] | None = tuple(disjuncts) if disjuncts is not None else None
        self.route = route  # "linear" | "dnf" | "lse"
        self.notices: tuple[str, ...] = tuple(notices)
        self.options = dict(options)
        self.sampler_settings = dict(sampler_settings)
        self.expr = expr  # the expanded AST (its boolean semantics is what samples should satisfy)
        self.refs = dict(refs or {})  # Concept → ConceptRef
        # {"name", "path", "reason"} when the compiler chose another model set than the registry's own
        self.model_set = dict(model_set) if model_set is not None else None
        # how the OR branches were weighted (compiler.or_weights.OrWeights), None without a mixture OR
        self.or_weights = or_weights
        # the registry's value_draws hook, (domain, family, given condition, n, seed) → (n, P) array:
        # how the sampler draws each chain's parameters for the drawn families (position(drawn))
        self.drawer = drawer
        # Group leaves by model (identity): one batched call per group.
        groups: dict[int, list[int]] = {}
        self._group_models: dict[int, ConceptModel] = {}
        for leaf in self.leaves:
            groups.setdefault(id(leaf.model), []).append(leaf.index)
            self._group_models[id(leaf.model)] = leaf.model
        self._groups: tuple[tuple[ConceptModel, tuple[int, ...]], ...] = tuple(
            (self._group_models[k], tuple(v)) for k, v in groups.items()
        )
        self._cond_cache: dict[tuple[int, str], torch.Tensor] = {}
        self._linear_coefs = self._linear_form()
        # Calibrated concept weights limited to σ ≥ weights_above: below it a chain takes its low
        # coefficients (the linear route's ``low_linear``, a disjunct's ``low_coefs``).
        self.weights_above = None if weights_above is None else float(weights_above)
        self.low_linear_coefs: tuple[float, ...] | None = None if low_linear is None else tuple(low_linear)
        # The domain's finishing model and the level below which its unconditional score alone
        # denoises every chain (the registry's ``finisher``); None: the composition to the end.
        self.finish_model: ConceptModel | None = None if finish is None else finish[0]
        self.finish_below: float | None = None if finish is None else float(finish[1])

    # -- properties ---------------------------------------------------------------------------
    @property
    def models(self) -> tuple[ConceptModel, ...]:
        """Every model the graph evaluates: the leaves' models, then the finishing model if it is another."""
        found = tuple(m for m, _ in self._groups)
        if self.finish_model is not None and all(m is not self.finish_model for m in found):
            found += (self.finish_model,)
        return found

    @property
    def is_linear(self) -> bool:
        """True when the energy is a fixed linear combination of leaf energies (no log-sum-exp)."""
        return self._linear_coefs is not None

    @functools.cached_property
    def drawn_leaves(self) -> dict[int, tuple[str, ...]]:
        """Leaf index → the families whose parameters (continuous) or values (discrete) each chain
        draws at sampling time (a condition value :class:`~conceptlang.interface.Drawn`); empty
        for most graphs."""
        out = {}
        for leaf in self.leaves:
            fams = tuple(f for f, v in leaf.condition.items() if isinstance(v, Drawn))
            if fams:
                out[leaf.index] = fams
        return out

    @functools.cached_property
    def reachable(self) -> frozenset[int]:
        """Ids of the nodes the root's energy depends on (lowering may leave unused ones)."""
        seen: set[int] = set()
        stack = [self.root]
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            node = self.nodes[nid]
            if isinstance(node, SumNode):
                stack.extend(c for _, c in node.terms)
            elif isinstance(node, LseNode):
                stack.extend(node.children)
        return frozenset(seen)

    @property
    def linear_coefs(self) -> tuple[float, ...] | None:
        """The energy as Σ coef · leaf (one coefficient per leaf) when :attr:`is_linear`, else None."""
        return self._linear_coefs

    def written_branches(self) -> list[tuple[str, list[int]]] | None:
        """The branches of the expression's OR(s) as written, in written order, each with the indices
        of its disjuncts; None where the graph has no disjunct of an OR as written (no OR, or only
        free families enumerated). Each disjunct belongs to one branch; with data-weighted ORs, to
        the first branch as written that its values satisfy."""
        if self.disjuncts is None or all(d.group is None for d in self.disjuncts):
            return None
        members: dict[str, list[int]] = {}
        rank: dict[str, tuple[int, ...]] = {}
        for i, d in enumerate(self.disjuncts):
            key = d.group or "?"
            members.setdefault(key, []).append(i)
            rank[key] = min(rank.get(key, d.group_rank), d.group_rank)
        return sorted(members.items(), key=lambda kv: rank[kv[0]])

    def branch_groups(self, branches: Sequence[int] | torch.Tensor) -> list[tuple[str, int]] | None:
        """How many chains drew each branch of :meth:`written_branches` (``branches``: each chain's
        disjunct index, as :func:`~conceptlang.sampling.sample` returns them); None without one."""
        written = self.written_branches()
        if written is None:
            return None
        drawn = torch.bincount(torch.as_tensor(branches, dtype=torch.long).reshape(-1),
                               minlength=len(self.disjuncts)).tolist()
        return [(text, sum(drawn[i] for i in ids)) for text, ids in written]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.leaves[0].model.image_shape)  # type: ignore[return-value]

    @property
    def all_explicit(self) -> bool:
        return all(m.kind == "explicit" for m in self.models)

    @property
    def all_noise_conditional(self) -> bool:
        return all(m.noise_conditional for m in self.models)

    def to(self, device: torch.device | str) -> "EnergyGraph":
        """Move models that know how (``model.to``); condition tensors follow x at evaluation time."""
        for model in self.models:
            mover = getattr(model, "to", None)
            if callable(mover):
                mover(device)
        return self

    # -- leaf evaluation ------------------------------------------------------------------------
    def _conds(self, model: ConceptModel, leaf_ids: Sequence[int], device: torch.device) -> torch.Tensor:
        key = (id(model), str(device))
        cached = self._cond_cache.get(key)
        if cached is None:
            cond = model.encode([self.leaves[i].condition for i in leaf_ids])  # (L_m, D)
            cached = cond.to(device)
            self._cond_cache[key] = cached
        return cached

    def chain_conditions(self, values: dict[tuple[int, str], torch.Tensor], device: torch.device
                         ) -> dict[int, torch.Tensor]:
        """Per-chain condition tensors for the models with drawn leaves: {id(model): (B, L_m, D)},
        each drawn leaf's condition with the chain's own parameters (``values[(leaf, family)]``,
        (B, P); for a discrete family (B, 1) value indices) in place of
        its :class:`~conceptlang.interface.Drawn` value, the other leaves' conditions as they are.
        Passed as ``chain_conds`` to the evaluation methods; without it a drawn family is null, the
        model's own marginal over it."""
        out: dict[int, torch.Tensor] = {}
        for model, ids in self._groups:
            if not any(i in self.drawn_leaves for i in ids):
                continue
            base = self._conds(model, ids, device)  # (L_m, D)
            b = next(v.shape[0] for (i, _), v in values.items() if i in ids)
            full = base.unsqueeze(0).repeat(b, 1, 1)  # (B, L_m, D)
            for j, i in enumerate(ids):
                fams = self.drawn_leaves.get(i)
                if not fams:
                    continue
                cond = dict(self.leaves[i].condition)
                rows = [{**cond, **{f: _drawn_value(cond[f], values[(i, f)][r]) for f in fams}} for r in range(b)]
                full[:, j] = model.encode(rows).to(device)
            out[id(model)] = full
        return out

    @staticmethod
    def _sigma_for(model: ConceptModel, sigma: torch.Tensor | None) -> torch.Tensor | None:
        return sigma if model.noise_conditional else None

    def _call(self, fn, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """fn(x, cond, sigma) on the stacked batch, sliced on the CPU (see ``cpu_chunk_values``).

        Slices end where the image changes, so the rows of one chain (the linear route stacks them
        together) stay in one call: a guided model evaluates its prior once per image per call, and
        a chain split over two calls would cost a second prior row."""
        n = x.shape[0]
        budget = self.cpu_chunk_values if x.device.type == "cpu" else None
        k = None if budget is None or n == 0 else max(1, budget // max(1, x[0].numel()))
        if k is None or n <= k:
            return fn(x, cond, sigma)
        same = (x[1:] == x[:-1]).flatten(1).all(1)  # (n − 1,) row i + 1 repeats row i's image
        if sigma is not None:
            same &= sigma[1:] == sigma[:-1]
        starts = [0] + (torch.nonzero(~same).squeeze(1) + 1).tolist() + [n]  # run starts, then the end
        bounds, start, j = [0], 0, 0
        while start < n:
            end = min(start + k, n)
            while j + 1 < len(starts) and starts[j + 1] <= end:
                j += 1
            if end < n and starts[j] > start:
                end = starts[j]  # the last run start inside the slice: that run goes whole into the next
            bounds.append(end)
            start = end
        return torch.cat([fn(x[a:b], cond[a:b], None if sigma is None else sigma[a:b])
                          for a, b in zip(bounds[:-1], bounds[1:])], 0)

    def leaf_energies(self, x: torch.Tensor, sigma: torch.Tensor | None = None,
                      chain_conds: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, C, H, W) → (B, L): every leaf on every image, one batched call per model
        (``chain_conds``: per-chain conditions, see :meth:`chain_conditions`)."""
        b = x.shape[0]
        out = x.new_empty((b, len(self.leaves)))
        for model, ids in self._groups:
            cond = self._conds(model, ids, x.device)  # (L_m, D)
            per_chain = chain_conds.get(id(model)) if chain_conds else None  # (B, L_m, D)
            k = len(ids)
            if k == 1:  # nothing to stack: no copy of x
                xs, cs = x, (cond.expand(b, -1) if per_chain is None else per_chain[:, 0])
            else:
                xs = x.repeat(k, 1, 1, 1)  # (k·B, C, H, W), leaf-major
                cs = (cond.repeat_interleave(b, dim=0) if per_chain is None
                      else per_chain.transpose(0, 1).reshape(k * b, -1))  # (k·B, D)
            sg = self._sigma_for(model, sigma)
            sg = sg.repeat(k) if sg is not None else None
            e = self._call(model.energy, xs, cs, sg).reshape(k, b)  # (k, B)
            out[:, list(ids)] = e.t().to(out.dtype)
        return out

    # -- DAG route ------------------------------------------------------------------------------
    def combine(self, per_leaf: torch.Tensor) -> torch.Tensor:
        """Per-leaf energies (B, L) → total energy (B,) through the DAG."""
        values: list[torch.Tensor | None] = [None] * len(self.nodes)
        for nid, node in enumerate(self.nodes):
            if isinstance(node, LeafNode):
                values[nid] = per_leaf[:, node.leaf]
            elif isinstance(node, SumNode):
                acc = None
                for coef, child in node.terms:
                    term = values[child] if coef == 1.0 else coef * values[child]
                    acc = term if acc is None else acc + term
                values[nid] = acc
            else:
                tau = node.tau
                stacked = torch.stack(
                    [-values[c] / tau - off for c, off in zip(node.children, node.offsets)], dim=1
                )  # (B, k)
                values[nid] = -tau * torch.logsumexp(stacked, dim=1)
        return values[self.root]  # type: ignore[return-value]

    def energy(self, x: torch.Tensor, sigma: torch.Tensor | None = None,
               chain_conds: dict[int, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) → (total (B,), per_leaf (B, L)). Each model is called once."""
        per_leaf = self.leaf_energies(x, sigma, chain_conds)
        return self.combine(per_leaf), per_leaf

    def energy_and_score(self, x: torch.Tensor, sigma: torch.Tensor | None = None,
                         coefs: torch.Tensor | None = None,
                         chain_conds: dict[int, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Total energy (B,) and score −∇ₓE (B, C, H, W) by autograd (explicit models only).

        ``coefs`` (B, L) selects the linear route (one DNF disjunct per chain)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            if coefs is None:
                total, _ = self.energy(xg, sigma, chain_conds)
            else:
                total = self.linear_energy(xg, coefs, sigma, chain_conds)
            (grad,) = torch.autograd.grad(total.sum(), xg)
        return total.detach(), -grad

    def score(self, x: torch.Tensor, sigma: torch.Tensor | None = None,
              chain_conds: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """∇ₓ log p of the composition at noise level ``sigma``: (B, C, H, W); below
        :attr:`finish_below` the finishing model's unconditional score."""
        return self.finished(x, sigma, lambda: self._composed_score(x, sigma, chain_conds))

    def _composed_score(self, x: torch.Tensor, sigma: torch.Tensor | None,
                        chain_conds: dict[int, torch.Tensor] | None) -> torch.Tensor:
        if self._linear_coefs is not None:
            coefs = torch.tensor(self._linear_coefs, dtype=x.dtype, device=x.device).expand(x.shape[0], -1)
            if self.low_linear_coefs is not None:
                low = torch.tensor(self.low_linear_coefs, dtype=x.dtype, device=x.device).expand(x.shape[0], -1)
                coefs = self.coefs_at(coefs, low, sigma)
            return self.linear_score(x, coefs, sigma, chain_conds)
        return self.energy_and_score(x, sigma, chain_conds=chain_conds)[1]

    # -- finishing model ----------------------------------------------------------------------
    def finish_rows(self, sigma: torch.Tensor | None) -> torch.Tensor | None:
        """Bool (B,): the chains whose noise level is below :attr:`finish_below`; None when there are none."""
        if self.finish_model is None or sigma is None:
            return None
        below = sigma < self.finish_below
        return below if bool(below.any()) else None

    def _finish_call(self, method: str, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        model = self.finish_model
        key = (id(model), "null", str(x.device))
        null = self._cond_cache.get(key)
        if null is None:
            null = self._cond_cache[key] = model.encode([{}]).to(x.device)  # (1, D)
        return self._call(getattr(model, method), x, null.expand(x.shape[0], -1), sigma)

    def finished(self, x: torch.Tensor, sigma: torch.Tensor | None, composed: Any, method: str = "score") -> torch.Tensor:
        """``composed()`` (the composition's ``method``: "score" or "energy"), with the chains below
        :attr:`finish_below` given the finishing model's unconditional ``method`` instead. A batch wholly
        below the level never evaluates the composition."""
        below = self.finish_rows(sigma)
        if below is None:
            return composed()
        own = self._finish_call(method, x, sigma)
        if bool(below.all()):
            return own
        out = composed()
        return torch.where(below.view(-1, *([1] * (out.dim() - 1))), own.to(out.dtype), out)

    # -- linear route -------------------------------------------------------------------------
    def _pairs(self, coefs: torch.Tensor, ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sub = coefs[:, list(ids)]  # (B, L_m)
        # Chain-major order of the non-zero (chain, leaf) pairs.
        chain, local = torch.nonzero(sub != 0, as_tuple=True)
        return chain, local, sub[chain, local]

    def linear_energy(self, x: torch.Tensor, coefs: torch.Tensor, sigma: torch.Tensor | None = None,
                      chain_conds: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Σ_l coefs[b, l] · E_l(x_b), evaluating only non-zero pairs: (B,)."""
        return self._linear("energy", x, coefs, sigma, x.new_zeros(x.shape[0]), chain_conds)

    def linear_score(self, x: torch.Tensor, coefs: torch.Tensor, sigma: torch.Tensor | None = None,
                     chain_conds: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Σ_l coefs[b, l] · s_l(x_b) with s = model.score: the ε-composition of implicit models."""
        return self._linear("score", x, coefs, sigma, torch.zeros_like(x), chain_conds)

    def _linear(self, method: str, x: torch.Tensor, coefs: torch.Tensor, sigma: torch.Tensor | None,
                total: torch.Tensor, chain_conds: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Σ_l coefs[b, l] · model.<method>(x_b | leaf l) into ``total``, one call per model group
        (``chain_conds``: per-chain conditions, see :meth:`chain_conditions`)."""
        for model, ids in self._groups:
            chain, local, c = self._pairs(coefs, ids)
            if chain.numel() == 0:
                continue
            per_chain = chain_conds.get(id(model)) if chain_conds else None
            cond = self._conds(model, ids, x.device)[local] if per_chain is None else per_chain[chain, local]
            sg = self._sigma_for(model, sigma)
            out = self._call(getattr(model, method), x[chain], cond, sg[chain] if sg is not None else None)
            c = c.to(out.dtype).view(-1, *([1] * (out.dim() - 1)))  # (n,) or (n, 1, 1, 1)
            total = total.index_add(0, chain, (c * out).to(total.dtype))
        return total

    def _linear_form(self) -> tuple[float, ...] | None:
        """The root as Σ coef · leaf when the DAG has no log-sum-exp, else None."""
        return linear_coefficients(self.nodes, self.root, len(self.leaves))

    def coefs_at(self, coefs: torch.Tensor, low: torch.Tensor | None, sigma: torch.Tensor | None) -> torch.Tensor:
        """Each chain's coefficient row at its noise level: ``low`` (B, L) where σ < :attr:`weights_above`,
        else ``coefs`` (B, L) (unchanged without a level, low rows or σ)."""
        if self.weights_above is None or low is None or sigma is None:
            return coefs
        below = (sigma.to(coefs.device) < self.weights_above)[:, None]  # (B, 1)
        return torch.where(below, low.to(coefs), coefs)

    # -- reporting ----------------------------------------------------------------------------
    def explain(self) -> str:
        from conceptlang.compiler.explain import explain_text

        return explain_text(self)

    def to_dot(self) -> str:
        from conceptlang.compiler.explain import explain_dot

        return explain_dot(self)

    def to_json(self) -> dict[str, Any]:
        from conceptlang.compiler.explain import graph_json

        return graph_json(self)

    def __repr__(self) -> str:
        return (f"EnergyGraph({self.expression!r}, domain={self.domain!r}, leaves={len(self.leaves)}, "
                f"route={self.route!r})")
