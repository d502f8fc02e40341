#!/usr/bin/env bash
# One short GPU lease, prepared as a single script (see training/README.md, "On a GPU"):
#   1. the sampling benchmark on CUDA, alone on the GPU: old and new defaults, and the new default
#      with bf16 autocast and channels-last switched on, each alone and together;
#   2. train both joint models further on CUDA (warm start from the shipped weights, cosine, a
#      fixed time budget, data drawn ahead by worker processes) while the gpu-marked tests run;
#   3. export the new weights into a copy of models/ (concept weights carried over, inference
#      readouts recalibrated);
#   4. the tuning lists (training/*_tuning.txt) with the shipped and the new weights on the same
#      seeds against one draw of reference data, and the results page's suites (in chunks, one per
#      worker) and inference with the new weights, side by side (MR_ARGS="" leaves the page out;
#      SUITE_BENCH=faces runs that example suite through bench_sampling, old and new samplers), and
#      the new scenes weights' outlines and last levels (training/outline_probe.py, partial_solve.py).
# Everything it writes goes under $OUT (at most 8 files come back from a lease: work in $W, pack at the end).
#
#   OUT=out/gpu TRAIN_S=210 bash training/gpu_session.sh
set -u
OUT=${OUT:-out/gpu}
W=${W:-/tmp/gw}
TRAIN_S=${TRAIN_S:-210}       # seconds of training per domain (both run side by side)
EVAL_S=${EVAL_S:-170}         # seconds allowed for the measurements after training
BENCH_S=${BENCH_S:-90}        # seconds allowed for the sampling benchmark
N=${N:-256}                   # samples per suite expression
NT=${NT:-64}                  # samples per tuning-list expression
BATCH=${BATCH:-128}           # training batch (32 on CPU; a GPU takes more at the same cost per step)
LR=${LR:-2e-4}                # peak learning rate (8e-4 on the first lease broke some concepts: docs/models-history.md)
DATA_SEED=${DATA_SEED:-15}    # new training images (11 and 14 were used before)
DEVICE=${DEVICE:-cuda}
BENCH_CONFIGS=${BENCH_CONFIGS:-"old,new,new:cuda_bf16=true,new:cuda_channels_last=true,new:cuda_bf16=true:cuda_channels_last=true"}
DEADLINE=${DEADLINE:-560}     # seconds after the start by which everything is packed (the lease's command limit is 600)
MR_ARGS=${MR_ARGS-"--only suites,inference --merge --n-infer 128 --suite-chunks 4"}  # empty: no results page
SUITE_BENCH=${SUITE_BENCH:-}  # domains whose example suite bench_sampling runs (old,new) with the new weights, in parts
SUITE_PARTS=${SUITE_PARTS:-2} # one process per part: every SUITE_PARTS-th expression
SCENES_ARGS=${SCENES_ARGS:-}  # extra training options per domain, e.g. "--config training/scenes-haze.json"
FACES_ARGS=${FACES_ARGS:-}
SCENES_WORKERS=${SCENES_WORKERS:-5}
FACES_WORKERS=${FACES_WORKERS:-7}
mkdir -p "$OUT" "$W"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=2
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
} >>"$LOG" 2>&1 || { say "environment check failed"; exit 3; }

if [ "$BENCH_S" -gt 0 ]; then
  say "== 1. sampling benchmark on $DEVICE (n = $N)"
  timeout "$BENCH_S" python3 benchmarks/bench_sampling.py --device "$DEVICE" --n "$N" --threads 4 \
    --configs "$BENCH_CONFIGS" --json "$W/sampling_cuda.json" >"$W/sampling_cuda.txt" 2>&1
  say "bench_sampling: exit $?"
fi

say "== 2. training (background, $TRAIN_S s each)"
for spec in "scenes $SCENES_WORKERS" "faces $FACES_WORKERS"; do
  set -- $spec
  extra=$SCENES_ARGS; [ "$1" = faces ] && extra=$FACES_ARGS
  ( timeout $((TRAIN_S + 60)) conceptlang train "$1" --init-from "models/$1-joint.safetensors" --out "$W/run-$1" \
      --device "$DEVICE" --batch-size "$BATCH" --lr "$LR" --lr-schedule cosine --lr-min 1e-5 \
      --data-seed "$DATA_SEED" --seed "$DATA_SEED" --threads 2 --data-workers "$2" --time-budget "$TRAIN_S" \
      --checkpoint-every 1000 --quiet $extra >"$W/train-$1.txt" 2>&1; echo "exit $?" >>"$W/train-$1.txt" ) &
done
timeout 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests >"$W/pytest_gpu.txt" 2>&1; say "gpu-marked tests: exit $?"
tail -5 "$W/pytest_gpu.txt" >>"$LOG"
wait
tail -n 3 "$W"/train-*.txt >>"$LOG"

say "== 3. export into a copy of models/"
cp -r models "$W/models_new"
python3 - "$W" >>"$LOG" 2>&1 <<'PY'
import sys
from pathlib import Path
from conceptlang.models.export import export_run
w = Path(sys.argv[1])
for d in ("scenes", "faces"):  # concept weights carried over (measured again by step 4); readouts recalibrated below
    try:
        export_run(w / f"run-{d}", w / "models_new", keep=("concept_weights",))
    except Exception as e:  # a failed run keeps the shipped weights in the copy
        print(f"export {d} failed: {e}")
print("exported")
PY
for d in scenes faces; do  # one manifest: the second calibration starts when the first has written it
  timeout "${CAL_S:-60}" conceptlang calibrate "$d" --models "$W/models_new" --device "$DEVICE" --threads 4 >"$W/calibrate_$d.txt" 2>&1
  say "calibrate $d: exit $?"
done

say "== 4. tuning lists (shipped vs new, n = $NT) and the page's suites with the new weights (n = $N)"
python3 - "$W/list" <<'PY'
import sys
from conceptlang.evaluation.suites import load_tuning_list
seen = {}
for f in ("distribution", "fidelity", "heldout", "sampler"):
    for s in load_tuning_list(f"training/{f}_tuning.txt"):
        for e in s.entries:
            seen.setdefault(s.domain, {}).setdefault(e.text, None)
for d, texts in seen.items():  # chunks of at most 7 rows, one process each
    texts = list(texts)
    for k in range(0, len(texts), 7):
        with open(f"{sys.argv[1]}_{d}_{k // 7}.txt", "w") as fh:
            fh.write(f"@domain {d}\n" + "".join(t + "\n" for t in texts[k:k + 7]))
PY
[ -n "$MR_ARGS" ] && mkdir -p "$W/docs" && cp -r docs/results.json docs/results.md docs/images "$W/docs/" 2>/dev/null
left=$((DEADLINE - $(date +%s) + T0 - 25)); [ "$left" -lt "$EVAL_S" ] && EVAL_S=$left
say "measurements get $EVAL_S s"
[ -n "$MR_ARGS" ] && ( timeout "$EVAL_S" python3 benchmarks/make_results.py --device "$DEVICE" --jobs 4 --threads 1 --n-eval "$N" $MR_ARGS \
    --models "$W/models_new" --docs "$W/docs" >"$W/make_results.txt" 2>&1; echo "exit $?" >>"$W/make_results.txt" ) &
for d in $SUITE_BENCH; do  # every SUITE_PARTS-th expression, one process each (join with bench_sampling.py --merge)
  python3 - "examples/${d}_suite.txt" "$W/suite_$d" "$SUITE_PARTS" <<'PY'
import sys
from pathlib import Path
from conceptlang.evaluation.suites import load_tuning_list
(s,) = load_tuning_list(sys.argv[1])
texts = [e.text for e in s.entries]
k = int(sys.argv[3])
for h in range(k):
    Path(f"{sys.argv[2]}_{h}.txt").write_text(f"@domain {s.domain}\n" + "".join(t + "\n" for t in texts[h::k]))
PY
  for h in $(seq 0 $((SUITE_PARTS - 1))); do
    ( timeout "$EVAL_S" python3 benchmarks/bench_sampling.py --device "$DEVICE" --n "$N" --threads 1 --configs old,new \
        --expressions "$W/suite_${d}_$h.txt" --models "$W/models_new" --json "$W/suite_${d}_$h.json" >"$W/suite_${d}_$h.log" 2>&1
      echo "exit $?" >>"$W/suite_${d}_$h.log" ) &
  done
done
k=0
for e in "square & red & small" "square & red & large" "square & green & small"; do  # the new scenes weights' outlines (CPU)
  k=$((k + 1))
  ( timeout $((EVAL_S - 5)) python3 training/outline_probe.py "$e" --n 128 --seed 5 --jitter "" --offset "" \
      --models "$W/models_new" --out "$W/probe_outline_$k.jsonl" >"$W/probe_outline_$k.txt" 2>&1 ) &
done
for e in "square & red & large" "circle & blue & large & position(0.35, 0.6)"; do  # do real images stay real (CPU)?
  k=$((k + 1))
  ( timeout $((EVAL_S - 5)) python3 training/partial_solve.py "$e" --levels 9,10,11,12 --models "$W/models_new" \
      --out "$W/probe_partial_$k.jsonl" >"$W/probe_partial_$k.txt" 2>&1 ) &
done
for f in "$W"/list_*.txt; do  # shipped and new weights on each expression, against one draw of reference data
  c=$(basename "$f" .txt); c=${c#list_}
  ( timeout $((EVAL_S - 5)) python3 training/distribution_tune.py "$f" --n "$NT" --seed 5 --device "$DEVICE" \
      --threads 1 --models models --models "$W/models_new" ${TUNE_ARGS:-} --out "$W/tune_$c.jsonl" >"$W/tune_$c.txt" 2>&1
    echo "exit $?" >>"$W/tune_$c.txt" ) &
done
wait
say "== packing"
tail -n 4 $([ -n "$MR_ARGS" ] && echo "$W/make_results.txt") "$W"/tune_*.txt "$W"/suite_*.log "$W"/probe_*.txt >>"$LOG" 2>&1
[ -n "$MR_ARGS" ] && tar -czf "$OUT/docs_new_n$N.tar.gz" -C "$W" docs make_results.txt 2>>"$LOG"
tar -czf "$OUT/new.tar.gz" -C "$W" models_new/manifest.json models_new/scenes-joint.json models_new/scenes-joint.safetensors models_new/faces-joint.json models_new/faces-joint.safetensors $(cd "$W" && ls -d sampling_cuda.* pytest_gpu.txt train-*.txt calibrate_*.txt \
  tune_* suite_* probe_* run-*/log.jsonl run-*/config.json 2>/dev/null) 2>>"$LOG"
ls -la "$OUT" >>"$LOG"
say "done"
