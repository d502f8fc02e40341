"""Measure how well samples cover p(x | expression) under one sampling setting.

For each expression of a list (``@domain NAME`` lines switch the domain; ``name: expr`` labels are
allowed as in the suites): draw ``--n`` samples with the shipped models (or ``--models DIR``;
``--device cuda`` on a GPU), judge them, and compare the judged attribute distribution of the
valid, satisfying samples with the data's conditional distribution given the expression, with
the project's distribution metrics, the ones ``conceptlang eval`` reports
(conceptlang/evaluation/distribution.py: generator labels of the domain's whole distribution kept
where the expression is true; TV per open family, position bins included; precision and recall
(k = 3) and KID in the judge's feature space against as many reference images as samples;
near-duplicate rate). Prints a table and appends one JSON line per expression to ``--out``.
``--models`` given more than once measures each folder on every expression against one draw of
the reference data (a continuation's weights beside the shipped ones).

    python training/distribution_tune.py training/distribution_tuning.txt --n 32 --seed 5 \\
        --negation complement --guidance 5 --interval 0 1 --out tune.jsonl

``--guidance`` / ``--interval`` / ``--prior-below`` / ``--prior-keeps`` override the manifest's
sampling guidance weight, guidance interval, ``prior_below`` and ``prior_keeps`` of every model for
this run (``--interval none``: guidance at every level; ``--prior-below none``: conditions at every
level; ``--prior-keeps none``: the prior alone below it; families a model lacks are left out for
it); ``--negation``,
``--free-families`` and ``--or-weights`` are the compile options. Without them the shipped
defaults apply.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from conceptlang.sampling.draws import DRAW_MODES


def read_list(path: str) -> list[tuple[str, str, str]]:
    """(domain, label, expression text) per entry (conceptlang.evaluation.suites.load_tuning_list)."""
    from conceptlang.evaluation.suites import load_tuning_list

    return [(s.domain, e.name, e.text) for s in load_tuning_list(path) for e in s.entries]


def override_prior(m, prior_below: str | None, prior_keeps: str | None) -> None:
    """Set a loaded implicit model's ``prior_below`` / ``prior_keeps`` from the command-line
    spellings (None: keep the model's; 'none': no level / the prior alone; families the model
    lacks are left out for it)."""
    if prior_below is None and prior_keeps is None:
        return
    below = m.prior_below if prior_below is None else (None if prior_below == "none" else float(prior_below))
    keeps = m.prior_keeps if prior_keeps is None else (() if prior_keeps == "none" else tuple(prior_keeps.split(",")))
    keeps = tuple(f for f in keeps if f in {s.family for s in m.slots})  # another domain's families: not this model's
    if below is None:
        m.prior_below, m.prior_keeps = None, ()
    else:
        m.set_prior_below(below, keeps)


def _f(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("expr_file")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--negation", choices=["ratio", "complement"], default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--interval", nargs="+", default=None, help="LO HI, or 'none'")
    ap.add_argument("--prior-below", default=None,
                    help="a noise level below which sampling follows each model's prior, or 'none'")
    ap.add_argument("--prior-keeps", default=None,
                    help="comma-separated families whose conditions stay below prior_below, or 'none'")
    ap.add_argument("--free-families", choices=["model", "discrete", "data"], default=None)
    ap.add_argument("--or-weights", choices=["data", "equal"], default=None)
    ap.add_argument("--no-concept-weights", action="store_true", help="score concepts as written")
    ap.add_argument("--domain", default=None, help="only this domain's entries")
    ap.add_argument("--only", default=None, help="only entries whose text contains this")
    ap.add_argument("--exclude", default=None, help="only entries whose text does not contain this")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a sampler setting for this run (a number, true/false or text), e.g. restarts=2")
    ap.add_argument("--named-radius", type=float, default=None, help="the compile option named_radius")
    ap.add_argument("--draws", choices=list(DRAW_MODES), default="spread",
                    help="how each chain's own position is drawn (sample's draws)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--models", action="append", default=None,
                    help="models folder (default $CONCEPTLANG_MODELS or the shipped models); given more than once, "
                         "every folder is measured on each expression against one draw of reference data")
    a = ap.parse_args(argv)
    settings = {}
    for item in a.set:
        key, sep, text = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        settings[key] = {"true": True, "false": False}.get(text.lower(), text)
        for kind in (int, float):
            try:
                settings[key] = kind(text)
                break
            except ValueError:
                pass
    torch.set_num_threads(a.threads)

    from conceptlang.compiler import compile as compile_expr
    from conceptlang.evaluation.distribution import REFERENCE_DOMAINS, distribution_metrics, family_values, reference_draw, reference_seed
    from conceptlang.judge.load import load_judge
    from conceptlang.models.registry import load_registry
    from conceptlang.sampling import resolve_device, sample
    from conceptlang.syntax import evaluate

    folders = a.models or [None]
    regs = [load_registry(f) for f in folders]
    device = resolve_device(a.device)
    for h in (h for reg in regs for h in reg.handles.values()):
        if h.kind != "implicit":
            continue
        m = h.impl("cpu")
        if a.guidance is not None:
            m.sampling_guidance = float(a.guidance)
        if a.interval is not None:
            m.guidance_interval = None if a.interval[0] == "none" else (float(a.interval[0]), float(a.interval[1]))
        override_prior(m, a.prior_below, a.prior_keeps)
    setting = {"negation": a.negation or "registry", "guidance": a.guidance or "registry",
               "interval": a.interval or "registry", "prior_below": a.prior_below or "registry",
               "prior_keeps": a.prior_keeps or "registry",
               "n": a.n, "seed": a.seed, "tag": a.tag, "settings": settings, "draws": a.draws}
    entries = [e for e in read_list(a.expr_file)
               if (a.domain is None or e[0] == a.domain) and (a.only is None or a.only in e[2])
               and (a.exclude is None or a.exclude not in e[2])]
    opts = {} if a.negation is None else {"negation": a.negation}
    if a.free_families is not None:
        opts["free_families"] = a.free_families
        setting["free_families"] = a.free_families
    if a.or_weights is not None:
        opts["or_weights"] = a.or_weights
        setting["or_weights"] = a.or_weights
    if a.named_radius is not None:
        opts["named_radius"] = a.named_radius
        setting["named_radius"] = a.named_radius
    if a.no_concept_weights:
        opts["concept_weights"] = False
        setting["concept_weights"] = False
    rows: dict[str | None, list[dict]] = {f: [] for f in folders}
    for domain, label, text in entries:
        ref = None  # one draw of reference data per expression, shared by every models folder
        ref_seed = reference_seed(label, 0)
        for folder, reg in zip(folders, regs):
            t0 = time.perf_counter()
            g = compile_expr(text, reg, domain=domain, **opts)
            res = sample(g, a.n, seed=a.seed, device=device, draws=a.draws, **({"steps": a.steps} if a.steps else {}),
                         **settings)
            imgs = ((res.images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
            judge = load_judge(g.domain)
            labs = judge.labels(imgs)
            valid = np.asarray(judge.valid(imgs), dtype=bool)
            sat = np.array([bool(evaluate(g.expr, lab)) for lab in labs])
            if ref is None and g.domain in REFERENCE_DOMAINS:
                ref = reference_draw(g.expr, g.domain, a.n, seed=ref_seed)
            m = distribution_metrics(g.expr, g.domain, imgs, labs, valid & sat, judge, seed=ref_seed, reference=ref)
            fams = {}
            for f in m.fidelity:
                fams[f.family] = {"tv": round(f.tv, 4), "floor": round(f.floor, 4),
                                  "samples": {k: round(v, 3) for k, v in f.samples.items()},
                                  "data": {k: round(v, 3) for k, v in f.reference.items()}}
            row = {"setting": setting, "models": folder, "domain": g.domain, "expression": label, "n": a.n,
                   "valid": float(valid.mean()), "accuracy": float((valid & sat).mean()),
                   "families": fams, "tv_mean": m.tv_mean, "tv_max": m.tv_max,
                   "precision": m.precision, "recall": m.recall, "kid": m.kid,
                   "precision_floor": m.precision_floor, "recall_floor": m.recall_floor,
                   "near_dup": m.near_dup, "seconds": round(time.perf_counter() - t0, 1),
                   "reference_rows": m.reference_labels, "labels": [family_values(g.domain, lab) for lab in labs],
                   "valid_each": valid.tolist(), "satisfied_each": sat.tolist(), "note": m.note}
            rows[folder].append(row)
            fam_txt = "  ".join(f"{k} {v['tv']:.2f}" for k, v in fams.items())
            print(f"{g.domain:6} {label[:34]:34} acc {row['accuracy']:.2f} valid {row['valid']:.2f} "
                  f"tv {row['tv_mean'] if row['tv_mean'] is not None else float('nan'):.2f}  [{fam_txt}]  "
                  f"P {_f(m.precision)} R {_f(m.recall)}  dup {row['near_dup']:.2f}  {row['seconds']:.0f}s"
                  + (f"  [{folder}]" if len(folders) > 1 else ""), flush=True)
            if a.out:
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    for folder in folders:
        if len(folders) > 1:
            print(f"== {folder}")
        _pooled(rows[folder], setting)


def _pooled(rows: list[dict], setting: dict) -> None:
    tvs = [r["tv_mean"] for r in rows if r["tv_mean"] is not None]
    fam_tvs = [f["tv"] for r in rows for f in r["families"].values()]
    if rows:
        pr = [(r["precision"], r["recall"]) for r in rows if r["precision"] is not None]
        print(f"pooled: precision {np.mean([p for p, _ in pr]) if pr else float('nan'):.3f}  recall "
              f"{np.mean([q for _, q in pr]) if pr else float('nan'):.3f}  near-dup "
              f"{np.mean([r['near_dup'] for r in rows]):.3f}")
        print(f"pooled: accuracy {np.mean([r['accuracy'] for r in rows]):.3f}  TV (mean over families) "
              f"{np.mean(fam_tvs) if fam_tvs else float('nan'):.3f}  worst expression "
              f"{max(tvs) if tvs else float('nan'):.3f}  worst family {max(fam_tvs) if fam_tvs else float('nan'):.3f}  "
              f"[{json.dumps(setting)}]")


if __name__ == "__main__":
    main()
