#!/usr/bin/env bash
# Retrain the continual-learning set (models/continual): each model sees ONE data set only.
# position: set 1 (continual1), shape: set 2, colour: set 3. Each run warm-starts from the model it
# replaces (its shipped weights; the position model gains its spatial input channel at zero), then
# is exported into models/continual with the manifest's tuned sampler settings kept.
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
conceptlang models --models models/continual --verify
