#!/usr/bin/env bash
# The 64×64 procedural-faces model (models/faces64), trained with the --data path of
# docs/training.md on a `conceptlang data` folder of 20,000 faces at 64 px, one CPU thread, nice 15.
# It warm-starts from the shipped 32×32 faces model (models/faces-joint: the same U-Net widths
# 32,64,96, so every weight fits; at 64 px its lowest level is 16×16); a later session continues
# from the last exported weights:
#   bash training/faces64.sh [SECONDS]          # default 3600: --time-budget of this run
#   INIT=models/faces64/faces64.safetensors bash training/faces64.sh 3600
# runs/faces64 is the run folder (a models folder at every checkpoint); an existing one is resumed.
# At the end its EMA weights are exported into models/faces64 (guidance 5 at σ ≤ 1, as the 32 px model's).
# CONCEPTLANG overrides the command (e.g. CONCEPTLANG="python -m conceptlang" in a checkout).
set -euo pipefail
secs=${1:-3600}
init=${INIT:-models/faces-joint.safetensors}
cl=${CONCEPTLANG:-conceptlang}
[ -e runs/faces64-data/dataset.json ] || $cl data faces -n 20000 --size 64 --seed 11 -o runs/faces64-data --quiet
args=(train --data runs/faces64-data --name faces64 --out runs/faces64 --widths 32,64,96 --batch-size 16
      --lr 5e-4 --lr-schedule cosine --lr-min 5e-5 --checkpoint-every 50 --threads 1 --data-workers 1 --quiet)
if [ -e runs/faces64/checkpoint.pt ]; then
  nice -n 15 $cl "${args[@]}" --resume
else
  nice -n 15 $cl "${args[@]}" --time-budget "$secs" --init-from "$init"
fi
# The sampler block: annealed steps with the 32 px model's distribution options (docs/training.md).
python -c "from conceptlang.models.export import export_run; from conceptlang.models.training import RUN_SAMPLER; export_run('runs/faces64', 'models/faces64', name='faces64', guidance=5.0, sampler=dict(RUN_SAMPLER, negation='complement', free_families='data'))"
python -c "import json; p='models/faces64/manifest.json'; m=json.load(open(p)); m['models'][0]['guidance_interval']=[0.0, 1.0]; open(p, 'w').write(json.dumps(m, indent=2) + '\n')"
