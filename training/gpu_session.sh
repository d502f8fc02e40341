#!/usr/bin/env bash
# One short GPU lease, prepared as a single script (see training/README.md, "On a GPU"):
#   1. train both joint models further on CUDA (warm start from the shipped weights, cosine, a
#      fixed time budget, data drawn ahead by worker processes) while the test suite runs;
#   2. check the CUDA path: the gpu-marked tests, the whole suite with CUDA visible, `sample`;
#   3. measure the shipped models with 256 samples per expression (benchmarks/make_results.py);
#   4. export the new weights into a copy of models/ and evaluate both suites with them.
# Everything it writes goes under $OUT (at most 8 files come back from a lease: work in $W, pack at the end).
#
#   OUT=out/gpu TRAIN_S=250 bash training/gpu_session.sh
set -u
OUT=${OUT:-out/gpu}
W=${W:-/tmp/gw}
TRAIN_S=${TRAIN_S:-250}       # seconds of training per domain (both run side by side)
EVAL_S=${EVAL_S:-210}         # seconds allowed for the measurements after training
N=${N:-256}                   # samples per suite expression
BATCH=${BATCH:-128}           # training batch (32 on CPU; a GPU takes more at the same cost per step)
LR=${LR:-2e-4}               # peak learning rate (8e-4 on the first lease broke some concepts: docs/models.md)
DEVICE=${DEVICE:-cuda}
TESTS=${TESTS:-"-n 6"}        # pytest arguments for the whole suite (xdist); "skip" to skip it
MR_ARGS=${MR_ARGS:-"--n-infer 96 --n-continual 128 --n-objects 128 --n-venn 64"}
mkdir -p "$OUT" "$W"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then  # packages the lease's image lacks (lark), carried as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
mkdir -p "$W/bin" && printf '#!/bin/sh\nexec python3 -m conceptlang "$@"\n' >"$W/bin/conceptlang" && chmod +x "$W/bin/conceptlang"
export PATH="$W/bin:$PATH"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }

say "== environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import sys, torch, lark; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'lark', lark.__version__)"
} >>"$LOG" 2>&1

say "== 1. training (background, $TRAIN_S s each)"
for spec in "scenes 2" "faces 6"; do
  set -- $spec
  ( timeout $((TRAIN_S + 60)) conceptlang train "$1" --init-from "models/$1-joint.safetensors" --out "$W/run-$1" \
      --device "$DEVICE" --batch-size "$BATCH" --lr "$LR" --lr-schedule cosine --lr-min 1e-5 --data-seed 11 --seed 11 \
      --threads 2 --data-workers "$2" --time-budget "$TRAIN_S" --checkpoint-every 1000 --quiet \
      >"$W/train-$1.txt" 2>&1; echo "exit $?" >>"$W/train-$1.txt" ) &
done

say "== 2. CUDA path"
timeout 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests >>"$LOG" 2>&1; say "gpu-marked tests: exit $?"
if [ "$TESTS" != skip ]; then
  timeout 150 python3 -m pytest -q -p no:cacheprovider $TESTS tests >"$W/pytest.txt" 2>&1; say "whole suite, CUDA visible: exit $?"
  tail -25 "$W/pytest.txt" >>"$LOG"
fi
for n in ${SAMPLE_N-16 256}; do
  s=$(date +%s.%N)
  timeout 45 conceptlang sample "(male & smiling) | ~black_hair" -n $n --device "$DEVICE" --seed 0 -o "$W/design_card_cuda_$n.png" >>"$LOG" 2>&1
  say "sample design card n=$n on $DEVICE: exit $? in $(python3 -c "import time; print(round(time.time() - $s, 1))") s"
done

say "== waiting for training"
wait
tail -n 3 "$W"/train-*.txt >>"$LOG"

say "== 3+4. shipped models at n=$N (make_results) and new weights (eval), side by side"
( timeout "$EVAL_S" python3 benchmarks/make_results.py --device "$DEVICE" --jobs 3 --threads 2 --n-eval "$N" $MR_ARGS \
    --docs "$W/docs" >"$W/make_results.txt" 2>&1; echo "exit $?" >>"$W/make_results.txt" ) &
cp -r models "$W/models_new"
for d in scenes faces; do
  python3 -c "from conceptlang.models.export import export_run; export_run('$W/run-$d', '$W/models_new')" >>"$LOG" 2>&1 \
    || { say "export $d failed"; continue; }
  ( timeout $((EVAL_S - 10)) conceptlang eval "examples/${d}_suite.txt" -n "$N" --device "$DEVICE" --threads 2 \
      --models "$W/models_new" -o "$W/eval_new_$d.json" --markdown "$W/eval_new_$d.md" --grids "$W/grids_new_$d" \
      >"$W/eval_new_$d.txt" 2>&1; echo "exit $?" >>"$W/eval_new_$d.txt" ) &
done
wait
say "== packing"
tail -n 4 "$W/make_results.txt" "$W"/eval_new_*.txt >>"$LOG" 2>&1
tar -czf "$OUT/docs_shipped_n$N.tar.gz" -C "$W" docs make_results.txt 2>>"$LOG"
tar -czf "$OUT/new.tar.gz" -C "$W" models_new $(cd "$W" && ls -d pytest.txt train-*.txt eval_new_* grids_new_* design_card_cuda_*.png \
  run-*/log.jsonl run-*/config.json 2>/dev/null) 2>>"$LOG"
( cd "$W" && tar -cf - run-*/checkpoint.pt run-*/net_config.json 2>/dev/null ) | split -b 15M - "$OUT/ckpt.tar.part-"
ls -la "$OUT" >>"$LOG"
say "done"
