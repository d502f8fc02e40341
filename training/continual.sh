#!/usr/bin/env bash
# Retrain the continual-learning set (models/continual): each model sees ONE data set only.
# position: set 1 (continual1), shape: set 2, colour: set 3. Each run warm-starts from the model it
# replaces (its shipped weights; the position model gains its spatial input channel at zero), then
# is exported into models/continual with the manifest's tuned sampler settings kept (exporting drops
# calibrated concept weights; the block at the end sets them again). The colour model is trained
# from scratch below.
# Usage (from the repository root): bash training/continual.sh [ITERS]   (default 1500 per model)
set -euo pipefail
iters=${1:-1500}
for spec in position:continual1 shape:continual2; do
  fam=${spec%%:*}; split=${spec##*:}; name=continual-$fam
  src=models/continual/$name.safetensors
  [ -e runs/$name/checkpoint.pt ] && resume=--resume || resume="--init-from $src"
  conceptlang train scenes "$fam" --split "$split" --name "$name" --out "runs/$name" --widths 16,32,48 \
    --checkpoint-every 250 --iters "$iters" --threads 1 --quiet $resume
  prior=$([ "$fam" = position ] && echo True || echo False)
  python -c "from conceptlang.models.export import export_run; export_run('runs/$name', 'models/continual', prior=$prior)"
done
# The shipped colour model is shape-blind (PixelNet: per-pixel layers plus round blurs of the
# brightness; it cannot represent an outline), trained from scratch on set 3 only (2,000 + 2,000
# iterations); it acts at sigma <= 0.2 with guidance 10, and the position model (also the set's
# prior) carries weight 0.5.
# These settings and the sampler's were chosen on training/continual_tuning.txt (docs/models.md, "Noise-level ranges").
colour=(train scenes color --split continual3 --arch pixel --config training/continual-color.json --widths 64,64,64,64
        --name continual-color --iters 2000 --lr-schedule cosine --lr-min 1e-5 --checkpoint-every 250 --threads 1 --quiet)
[ -e runs/continual-color-pixmax/checkpoint.pt ] && resume=--resume || resume=
conceptlang "${colour[@]}" --out runs/continual-color-pixmax --lr 1e-3 $resume
# then 2,000 more iterations at a third of the peak learning rate (3e-4 -> 1e-5, cosine): more even
# colours (tuning triples 0.85 against 0.82, docs/models-history.md, "Noise-level ranges")
[ -e runs/continual-color-pixmax-ft/checkpoint.pt ] && resume=--resume || resume="--init-from runs/continual-color-pixmax"
conceptlang "${colour[@]}" --out runs/continual-color-pixmax-ft --lr 3e-4 $resume
python - <<'PY'
import json
from conceptlang.models.export import export_run
from conceptlang.io import write_json
export_run("runs/continual-color-pixmax-ft", "models/continual", prior=False)
path = "models/continual/manifest.json"
data = json.load(open(path))
for e in data["models"]:
    if e["name"] == "continual-color":
        e["sigma_range"] = [0.0, 0.2]
        e["guidance"] = 10.0
    if e["name"] == "continual-position":
        e["concept_weights"] = {"position": 0.5}
    # one deterministic step per noise level, twice the DDIM step (docs/models.md, "Sampler settings");
    # each chain's named position drawn within 0.02 of the point, spread over that disc
    e["sampler"].update(steps_per_sigma=1, step_size=3.34e-05, noise_scale=0.0,
                        free_families="data", named_positions="data", named_radius=0.02)
write_json(path, data)
PY
conceptlang models --models models/continual --verify
