"""Measuring a judge on held-out generator output (seeds never used in training): accuracy per
family on clean, noisy and blurred images, validity on real against corrupted images; and the
measured figures as stored in, and printed from, the judges manifest::

    conceptlang judge eval scenes|faces|all [--judges DIR] [--update]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlang.data import faces as fc
from conceptlang.errors import ModelError
from conceptlang.judge import validity as V
from conceptlang.judge.augment import Augmentation, augment
from conceptlang.judge.judge import Judge
from conceptlang.judge.load import clear_cache, judges_dir
from conceptlang.models.manifest import load_judges_manifest, update_judges_manifest

EVAL_SEED = 424_242  # never used in training (training seeds are seed * 1_000_003 + step)


def _augment_np(images: np.ndarray, kind: str, seed: int) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    gen = torch.Generator().manual_seed(seed)
    if kind == "noisy":
        cfg = Augmentation(noise_p=1.0, noise_max=20.0, blur_p=0.0, gain_p=0.0)
    elif kind == "blurred":
        cfg = Augmentation(noise_p=0.0, blur_p=1.0, gain_p=0.0)
    else:
        return images
    return augment(x, cfg, gen).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _match_objects(pred: list[dict], true: list[dict]) -> list[tuple[dict, dict | None]]:
    pairs, used = [], set()
    for t in true:
        best, bd = None, np.inf
        for j, p in enumerate(pred):
            d = (p["x"] - t["x"]) ** 2 + (p["y"] - t["y"]) ** 2
            if j not in used and d < bd:
                best, bd = j, d
        if best is not None:
            used.add(best)
        pairs.append((t, pred[best] if best is not None else None))
    return pairs


def measure(judge: Judge, n: int = 2000, log=print) -> dict:
    """Held-out accuracy per family (clean, noisy, blurred) and validity on real vs corrupted."""
    from conceptlang.data import generate

    t0 = time.time()
    metrics: dict[str, Any] = {"n": n, "eval_seed": EVAL_SEED, "accuracy": {}, "validity": {}}
    if judge.domain == "scenes":
        for split in ("train", "heldout", "two_objects"):
            imgs, labels = generate("scenes", n, seed=EVAL_SEED, split=split)
            for cond in ("clean", "noisy", "blurred"):
                x = _augment_np(imgs, cond, EVAL_SEED)
                pred = judge.labels(x)
                correct = {f: 0 for f in ("shape", "color", "size")}
                total, errs, count_ok = 0, [], 0
                for p, t in zip(pred, labels):
                    count_ok += len(p["objects"]) == len(t["objects"])
                    for tt, pp in _match_objects(p["objects"], t["objects"]):
                        total += 1
                        if pp is None:
                            continue
                        for f in correct:
                            correct[f] += pp[f] == tt[f]
                        errs.append(max(abs(pp["x"] - tt["x"]), abs(pp["y"] - tt["y"])))
                row = {f: round(c / total, 4) for f, c in correct.items()}
                row["object_count"] = round(count_ok / n, 4)
                row["position_mean_abs_error"] = round(float(np.mean(errs)), 4) if errs else None
                row["position_p99_error"] = round(float(np.quantile(errs, 0.99)), 4) if errs else None
                metrics["accuracy"][f"{split}/{cond}"] = row
                log(f"  {split:12s} {cond:8s} {row}")
        real_valid = {}
        for split in ("train", "heldout", "continual1", "continual2", "continual3", "two_objects"):
            imgs, _ = generate("scenes", n, seed=EVAL_SEED + 1, split=split)
            stated = 2 if split == "two_objects" else 1
            real_valid[split] = round(float(judge.valid(imgs, n_objects=stated).mean()), 4)
        imgs, _ = generate("scenes", n, seed=EVAL_SEED + 2)
        real_valid["train (noisy σ≤20)"] = round(float(judge.valid(_augment_np(imgs, "noisy", 1)).mean()), 4)
        real_valid["train (blurred)"] = round(float(judge.valid(_augment_np(imgs, "blurred", 1)).mean()), 4)
    else:
        imgs, labels = generate("faces", n, seed=EVAL_SEED)
        for cond in ("clean", "noisy", "blurred"):
            pred = judge.labels(_augment_np(imgs, cond, EVAL_SEED))
            row = {"hair": round(float(np.mean([p["objects"][0]["hair"] == t["objects"][0]["hair"]
                                                for p, t in zip(pred, labels)])), 4)}
            for b in fc.BINARY:
                row[b] = round(float(np.mean([p[b] == t[b] for p, t in zip(pred, labels)])), 4)
            errs = [max(abs(p["objects"][0]["x"] - t["objects"][0]["x"]), abs(p["objects"][0]["y"] - t["objects"][0]["y"]))
                    for p, t in zip(pred, labels)]
            row["position_mean_abs_error"] = round(float(np.mean(errs)), 4)
            metrics["accuracy"][cond] = row
            log(f"  faces {cond:8s} {row}")
        imgs, _ = generate("faces", n, seed=EVAL_SEED + 1)
        real_valid = {"train": round(float(judge.valid(imgs).mean()), 4)}
        real_valid["train (noisy σ≤20)"] = round(float(judge.valid(_augment_np(imgs, "noisy", 1)).mean()), 4)
        real_valid["train (blurred)"] = round(float(judge.valid(_augment_np(imgs, "blurred", 1)).mean()), 4)
    untrained = {}
    if judge.domain == "faces":
        # Failure modes the validity head never saw in training (500 images each).
        faces, _ = generate("faces", 500, seed=EVAL_SEED + 3)
        scenes, _ = generate("scenes", 500, seed=EVAL_SEED + 3)
        for name, imgs in {
            "scenes images": scenes,
            "upside-down faces": faces[:, ::-1].copy(),
            "colour-inverted faces": 255 - faces,
            "faces shifted 8 px sideways": np.roll(faces, 8, axis=2),
        }.items():
            untrained[name] = round(float(1 - judge.valid(imgs).mean()), 4)
    bad, kinds = V.corruptions(judge.domain, n, seed=EVAL_SEED)
    ok = judge.valid(bad)
    failed = {k: round(float(np.mean([not o for o, kk in zip(ok, kinds) if kk == k])), 4) for k in dict.fromkeys(kinds)}
    failed["all"] = round(float(1 - ok.mean()), 4)
    metrics["validity"] = {"real_pass_rate": real_valid, "corrupted_fail_rate": failed}
    if untrained:
        metrics["validity"]["untrained_fail_rate"] = untrained
    log(f"  validity real pass: {real_valid}")
    log(f"  validity corrupted fail: {failed}")
    metrics["seconds"] = round(time.time() - t0, 1)
    return metrics


def markdown_tables(directory: Path | None = None) -> str:
    """The manifest's measured figures as markdown tables (for docs/data.md)."""
    manifest = load_judges_manifest(directory or judges_dir())
    lines = []
    for dom, entry in manifest["judges"].items():
        acc = entry["metrics"]["accuracy"]
        rows = list(acc.items())
        cols = [c for c in rows[0][1] if c != "position_p99_error"]
        lines += [f"**{dom}** ({entry['architecture']['parameters']:,} parameters, "
                  f"{entry['training']['steps']} steps, {entry['training']['seconds']:.0f} s on one thread)", "",
                  "| images | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
                  "| --- |" + " --- |" * len(cols)]
        for name, row in rows:
            lines.append(f"| {name} | " + " | ".join("" if row[c] is None else f"{row[c]:.4f}" for c in cols) + " |")
        lines.append("")
    for dom, entry in manifest["judges"].items():
        v = entry["metrics"]["validity"]
        real, bad = list(v["real_pass_rate"].items()), list(v["corrupted_fail_rate"].items())
        lines += [f"**{dom} validity**", "", "| real images | pass | corrupted images | fail |", "| --- | --- | --- | --- |"]
        for k in range(max(len(real), len(bad))):
            a = f"{real[k][0]} | {real[k][1]:.4f}" if k < len(real) else " | "
            b = f"{bad[k][0]} | {bad[k][1]:.4f}" if k < len(bad) else " | "
            lines.append(f"| {a} | {b} |")
        lines.append("")
        if v.get("untrained_fail_rate"):
            lines += [f"**{dom} validity on failure modes not in training**", "", "| images | fail |", "| --- | --- |"]
            lines += [f"| {k} | {x:.4f} |" for k, x in v["untrained_fail_rate"].items()]
            lines.append("")
    return "\n".join(lines)


def store_metrics(directory: Path, domain: str, metrics: dict) -> None:
    """Write re-measured figures of ``domain``'s judge (same checkpoint) into its manifest."""

    def change(manifest: dict) -> None:
        if domain not in manifest["judges"]:
            raise ModelError(f"{Path(directory) / 'manifest.json'}: no entry for the {domain!r} judge")
        manifest["judges"][domain]["metrics"] = metrics

    update_judges_manifest(directory, change)
    clear_cache()
