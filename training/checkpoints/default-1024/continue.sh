#!/usr/bin/env bash
# Continue the default recipe at a 1,024-token window (training/configs/recipes/RUNS.md, `default-1024`)
# exactly from its committed step checkpoint, then calibrate it and score it held out against the
# default. Run from the repository root of a checkout of main, on one core, nothing heavy beside:
#   nohup setsid training/checkpoints/default-1024/continue.sh > /work/logs/default-1024.log 2>&1 &
# Each stage prints progress with an ETA; the run itself logs to /work/runs/default-1024/train.log.
set -euo pipefail
REPO=$(pwd)
CODE=8e5a827            # the commit the run started from: its prompts, segments and epoch plan
R=/work/runs/default-1024
DATA=${DIALOGUELLM_DATA:-/work/shared/data}
STEP=$R/ray_results/adapter/local-checkpoints/last-step

if [ ! -f "$R/adapter/adapter_model.safetensors" ]; then
  if [ ! -d /work/runs/code-$CODE ]; then
    mkdir -p /work/runs/code-$CODE && git archive $CODE | tar -x -C /work/runs/code-$CODE
  fi
  if [ ! -f "$STEP/position.json" ]; then
    mkdir -p "$STEP" && cp "$REPO"/training/checkpoints/default-1024/last-step/* "$STEP"/
  fi
  (cd /work/runs/code-$CODE && PYTHONPATH=$PWD DIALOGUELLM_DATA=$DATA OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    taskset -c 1 "$REPO"/.venv/bin/python -m training.train --config training/configs/smollm2-135m-cpu.yaml \
    --set max_model_len=1024 --set output_dir=$R/adapter --storage $R/ray_results --resume "$STEP" >> $R/train.log 2>&1)
fi

export DIALOGUELLM_DATA=$DATA
B="$REPO"/.venv/bin/dialoguellm
$B calibrate w1024=$R/adapter --out /work/runs/default-1024-cal  # served at the window it records: 1,024
