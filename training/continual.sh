#!/usr/bin/env bash
# Retrain the continual-learning set (models/continual): each model sees ONE data set only.
# position: set 1 (continual1), shape: set 2, colour: set 3. Each run warm-starts from the model it
# replaces (its shipped weights; the position model gains its spatial input channel at zero), then
# is exported into models/continual with the manifest's tuned sampler settings kept. The colour model
# then trains 1,500 more iterations with cut-outs (--cutout 0.5: still set-3 images only, half of them
# with a random background rectangle) and ships acting at noise levels σ <= 0.2 only (sigma_range;
# docs/models.md, "Noise-level ranges").
# Usage (from the repository root): bash training/continual.sh [ITERS]   (default 1500 per model)
set -euo pipefail
iters=${1:-1500}
for spec in position:continual1 shape:continual2 color:continual3; do
  fam=${spec%%:*}; split=${spec##*:}; name=continual-$fam
  src=models/continual/$name.safetensors
  [ -e runs/$name/checkpoint.pt ] && resume=--resume || resume="--init-from $src"
  conceptlang train scenes "$fam" --split "$split" --name "$name" --out "runs/$name" --widths 16,32,48 \
    --checkpoint-every 250 --iters "$iters" --threads 1 --quiet $resume
  prior=$([ "$fam" = position ] && echo True || echo False)
  python -c "from conceptlang.models.export import export_run; export_run('runs/$name', 'models/continual', prior=$prior)"
done
[ -e runs/continual-color-cut/checkpoint.pt ] && resume=--resume || resume="--init-from models/continual/continual-color.safetensors"
conceptlang train scenes color --split continual3 --name continual-color --out runs/continual-color-cut --widths 16,32,48 \
  --cutout 0.5 --lr 5e-4 --lr-schedule cosine --lr-min 1e-5 --iters 1500 --seed 3 --data-seed 3 \
  --checkpoint-every 250 --threads 1 --quiet $resume
python - <<'PY'
import json
from conceptlang.models.export import export_run
from conceptlang.io import write_json
export_run("runs/continual-color-cut", "models/continual", prior=False)
path = "models/continual/manifest.json"
data = json.load(open(path))
for e in data["models"]:
    if e["name"] == "continual-color":
        e["sigma_range"] = [0.0, 0.2]
write_json(path, data)
PY
conceptlang models --models models/continual --verify
