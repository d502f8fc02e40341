"""Human-readable views of an energy graph: text, Graphviz DOT and JSON (for the sample sidecar)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from conceptlang.compiler.nodes import Leaf, LeafNode, SumNode
from conceptlang.interface import Drawn
from conceptlang.models.manifest import GuidanceSettings

if TYPE_CHECKING:
    from conceptlang.compiler.graph import EnergyGraph

_AND_TEXT = {
    "sum": "sum of energies",
    "product": "prior-corrected product",
    "joint": "prior-corrected product, concepts of one joint model as one condition",
}


def linear_text(coefs: tuple[float, ...], leaves: list[Leaf]) -> str:
    """``E[a] + E[b] − 0.5·E[c]`` for a coefficient row over the leaves."""
    out = ""
    for c, leaf in zip(coefs, leaves):
        if c == 0.0:
            continue
        mag = abs(c)
        term = f"E[{leaf.label}]" if mag == 1.0 else f"{mag:g}·E[{leaf.label}]"
        if not out:
            out = ("−" if c < 0 else "") + term
        else:
            out += f" {'−' if c < 0 else '+'} {term}"
    return out or "0"


def _cond_value(v: Any) -> Any:
    """A condition value for display/JSON: a name, a list of numbers, "<none>" (known absent) or
    "<drawn>" (parameters drawn per chain at sampling time)."""
    if isinstance(v, str):
        return v
    if isinstance(v, (tuple, list)):
        return list(v)
    if isinstance(v, Drawn):
        where = "away from" if v.away else "near"
        if v.near is None:
            return "<drawn>"
        avoid = " away from " + ", ".join(f"{p:g}" for p in v.avoid) if v.avoid else ""
        return f"<drawn {where} " + ", ".join(f"{p:g}" for p in v.near) + avoid + ">"
    return "<none>"


def _cond_text(cond: Any) -> str:
    if not cond:
        return "{} (unconditional)"
    shown = {k: _cond_value(v) for k, v in cond.items()}
    return "{" + ", ".join(f"{k}: {v if isinstance(v, str) else tuple(v)}" for k, v in shown.items()) + "}"


def _model_text(m: Any) -> str:
    kind = getattr(m, "kind", "?")
    nc = ", noise-conditional" if getattr(m, "noise_conditional", False) else ""
    return f"{m.name} ({kind}{nc})"


def _guidance_text(m: Any) -> str | None:
    """How a guided model samples (weight, noise interval, autoguide, the prior's last levels), read
    from its manifest entry (a registry handle: nothing is loaded) or from the loaded model; None
    for a model without guidance."""
    entry = getattr(m, "entry", None)
    if isinstance(entry, dict):
        g = GuidanceSettings.of_entry(entry)
    else:
        g = getattr(m, "guidance_settings", None)
    if g is None or not g.guided:
        return None
    return f"{m.name}: {g.describe()}"


def _node_expr(g: "EnergyGraph", nid: int) -> str:
    node = g.nodes[nid]
    if isinstance(node, LeafNode):
        return f"L{node.leaf}"
    if isinstance(node, SumNode):
        parts = []
        for c, child in node.terms:
            ref = _ref(g, child)
            if not parts:
                parts.append(ref if c == 1.0 else ("−" + ref if c == -1.0 else f"{c:g}·{ref}"))
            else:
                sign = "−" if c < 0 else "+"
                mag = abs(c)
                parts.append(f"{sign} {ref if mag == 1.0 else f'{mag:g}·{ref}'}")
        return "sum(" + " ".join(parts) + ")"
    args = ", ".join(_ref(g, c) + (f" − log Z {off:+g}" if off else "") for c, off in zip(node.children, node.offsets))
    return f"−{node.tau:g}·logsumexp(−E/{node.tau:g}: {args})"


def _ref(g: "EnergyGraph", nid: int) -> str:
    node = g.nodes[nid]
    return f"L{node.leaf}" if isinstance(node, LeafNode) else f"n{nid}"


def _log_z_text(g: "EnergyGraph") -> str:
    if not isinstance(g.options["log_z"], str):
        return "as given"
    ow = getattr(g, "or_weights", None)
    if ow is not None and ow.source == "data":
        return "of each OR branch: −log of its data probability, above"
    return "taken as equal"


def explain_text(g: "EnergyGraph") -> str:
    o = g.options
    lines = [f"expression: {g.expression}", f"domain: {g.domain}"]
    lines.append("models: " + ", ".join(_model_text(m) for m in g.models))
    guided = [t for t in (_guidance_text(m) for m in g.models) if t is not None]
    if guided:
        lines.append("sampling guidance: " + "; ".join(guided))
    if g.model_set is not None:
        lines.append(f"model set: {g.model_set['name']} ({g.model_set['path']}), chosen because {g.model_set['reason']}")
    lines.append(f"semantics: AND = {_AND_TEXT.get(o['and_mode'], o['and_mode'])}"
                 f" (and_mode={o['and_mode']}), NOT weight α = {o['alpha']:g}, OR temperature τ = {o['tau']:g}, "
                 f"log Z = {o['log_z'] if isinstance(o['log_z'], str) else o['log_z']}")
    lines.append(f"leaves ({len(g.leaves)}; each model is evaluated once per step with its leaves stacked):")
    for leaf in g.leaves:
        lines.append(f"  L{leaf.index}  {leaf.label:<24} model {leaf.model.name}  condition {_cond_text(leaf.condition)}")
    lines.append("graph (inner nodes, children first):")
    inner = [nid for nid, n in enumerate(g.nodes) if not isinstance(n, LeafNode) and nid in g.reachable]
    if not inner:
        lines.append(f"  root = {_ref(g, g.root)}")
    for nid in inner:
        mark = "root" if nid == g.root else f"n{nid}"
        text = g.node_text.get(nid, "")
        lines.append(f"  {mark} = {_node_expr(g, nid)}" + (f"    # {text}" if text else ""))
    lines.append("negation grounding:")
    if g.groundings:
        seen = set()
        for gr in g.groundings:
            d = gr.describe()
            if d not in seen:
                seen.add(d)
                lines.append("  " + d)
    else:
        lines.append("  (no negation)")
    ow = getattr(g, "or_weights", None)
    if ow is not None and ow.source == "data":
        lines.append(f"OR branch weights (or_weights=data): each combination of {', '.join(ow.families)} that satisfies "
                     "the expression, drawn with its probability in the data:")
        for text, w in ow.written:
            lines.append(f"  {w:.3f}  {text}")
        lines.append("  by combination: " + ", ".join(f"{t} {w:.3f}" for t, w in ow.branches))
    if g.route == "linear":
        lines.append("sampling route: one product of experts: E = " + linear_text(g.linear_coefs, list(g.leaves)))
    elif g.route == "dnf":
        lines.append(f"sampling route: exact DNF mixture of {len(g.disjuncts)} disjunct(s); each chain draws one "
                     f"with probability ∝ exp(−log Z) (log Z {_log_z_text(g)})")
        written = g.written_branches()
        if written is not None:
            lines.append("  by branch as written: " + ", ".join(
                f"{t} {sum(g.disjuncts[i].share for i in ids):.3f} ({len(ids)} disjunct{'s' if len(ids) != 1 else ''})"
                for t, ids in written))
        for i, d in enumerate(g.disjuncts):
            branch = "" if d.group is None else f"  (branch {d.group})"
            lines.append(f"  D{i}  share {d.share:.3f}  {d.text}{branch}:  E = {linear_text(d.coefs, list(g.leaves))}")
    else:
        lines.append("sampling route: log-sum-exp energies (chains cannot hop between the modes of an OR, "
                     "so branch shares follow the starting points)")
    for n in g.notices:
        lines.append("note: " + n)
    s = g.sampler_settings
    if s:
        lines.append("registry sampler settings: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    return "\n".join(lines)


def _dot_escape(s: str) -> str:
    return json.dumps(s)[1:-1]


def explain_dot(g: "EnergyGraph") -> str:
    """Graphviz DOT: leaves are boxes, sums are ellipses, log-sum-exps diamonds; edges carry coefficients.

    Negative edges are drawn red and labelled with how the negation was grounded."""
    out = ["digraph energy {", "  rankdir=BT;", '  node [fontname="Helvetica"];',
           f'  label="{_dot_escape(g.expression)}  (domain {g.domain}, route {g.route})"; labelloc=t;']
    for leaf in g.leaves:
        out.append(f'  L{leaf.index} [shape=box, label="{_dot_escape(leaf.label)}\\n{_dot_escape(leaf.model.name)}"];')
    ground: dict[tuple[int, int], object] = {}
    for gr in g.groundings:
        ground.setdefault((gr.node, gr.child), gr)
        ground.setdefault((-1, gr.child), gr)
    for nid, node in enumerate(g.nodes):
        if isinstance(node, LeafNode) or nid not in g.reachable:
            continue
        text = _dot_escape(g.node_text.get(nid, ""))
        if isinstance(node, SumNode):
            out.append(f'  n{nid} [shape=ellipse, label="Σ\\n{text}"];')
            for c, child in node.terms:
                attrs = f'label="{c:g}"'
                if c < 0:
                    gr = ground.get((nid, child)) or ground.get((-1, child))
                    how = "" if gr is None else (" grounded by prior" if gr.grounded_by == "prior"
                                                 else " grounded by positive part")
                    attrs = f'label="{c:g}{how}", color=red, fontcolor=red'
                out.append(f"  {_ref(g, child)} -> n{nid} [{attrs}];")
        else:
            out.append(f'  n{nid} [shape=diamond, label="−{node.tau:g}·LSE\\n{text}"];')
            for child, off in zip(node.children, node.offsets):
                lab = f' [label="log Z {off:g}"]' if off else ""
                out.append(f"  {_ref(g, child)} -> n{nid}{lab};")
    out.append(f'  root [shape=plaintext, label="E"];  {_ref(g, g.root)} -> root;')
    out.append("}")
    return "\n".join(out) + "\n"


def graph_json(g: "EnergyGraph") -> dict[str, Any]:
    nodes = []
    for nid, node in enumerate(g.nodes):
        if isinstance(node, LeafNode):
            nodes.append({"id": nid, "op": "leaf", "leaf": node.leaf})
        elif isinstance(node, SumNode):
            nodes.append({"id": nid, "op": "sum", "terms": [[c, child] for c, child in node.terms],
                          "text": g.node_text.get(nid, "")})
        else:
            nodes.append({"id": nid, "op": "logsumexp", "tau": node.tau, "children": list(node.children),
                          "log_z": list(node.offsets), "text": g.node_text.get(nid, "")})
    return {
        "expression": g.expression,
        "domain": g.domain,
        "route": g.route,
        "options": g.options,
        "leaves": [
            {"index": leaf.index, "concept": leaf.label, "model": leaf.model.name,
             "condition": {k: _cond_value(v) for k, v in leaf.condition.items()}}
            for leaf in g.leaves
        ],
        "nodes": nodes,
        "root": g.root,
        "negations": [gr.describe() for gr in g.groundings],
        "disjuncts": None if g.disjuncts is None else [
            {"text": d.text, "branch": d.group, "share": d.share, "log_weight": d.log_weight,
             "coefficients": list(d.coefs)}
            for d in g.disjuncts
        ],
        "notices": list(g.notices),
        "or_weights": None if getattr(g, "or_weights", None) is None else g.or_weights.to_json(),
        "model_set": g.model_set,
        "finish": None if g.finish_model is None else {"model": g.finish_model.name, "below": g.finish_below},
    }
