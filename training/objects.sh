#!/usr/bin/env bash
# Train the object-level composition set (models/objects): the shipped scenes model, fine-tuned on a
# half-and-half mixture of one-object scenes and two-object scenes in which each training condition
# names ONE object (so "position(a)" means "an object at a", not "the only object, at a").
# Two warm-started cosine runs, as shipped (≈ 40 minutes each on one CPU core):
# Usage (from the repository root): bash training/objects.sh
set -euo pipefail
common=(scenes --split train:0.5,two_objects:0.5 --name objects-joint --lr-schedule cosine --lr-min 1e-5
        --iters 3000 --checkpoint-every 250 --threads 1 --quiet)
[ -e runs/objects-joint/checkpoint.pt ] && r1=--resume || r1="--init-from models/scenes-joint.safetensors"
conceptlang train "${common[@]}" --out runs/objects-joint --lr 3e-4 --seed 11 --data-seed 11 $r1
[ -e runs/objects-joint2/checkpoint.pt ] && r2=--resume || r2="--init-from runs/objects-joint"
conceptlang train "${common[@]}" --out runs/objects-joint2 --lr 2e-4 --seed 12 --data-seed 12 $r2
# the set's measured sampler settings, guidance and its interval stay those of the shipped manifest
# entry (export_run keeps them; docs/models.md)
python - <<'PY'
from conceptlang.models.export import export_run
export_run("runs/objects-joint2", "models/objects")
PY
conceptlang models --models models/objects --verify
