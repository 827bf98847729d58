#!/usr/bin/env bash
# Continue the default recipe's seed-1 run (training/configs/recipes/RUNS.md, `default-seed1`) exactly
# from its committed step checkpoint, then average it with the shipped default, calibrate the average
# and score it. Run from the repository root of a checkout of main, on one core, nothing heavy beside:
#   nohup setsid training/checkpoints/default-seed1/continue.sh > /work/logs/seed1.log 2>&1 &
# Each stage prints progress with an ETA; the run itself logs to /work/runs/default-seed1/train.log.
set -euo pipefail
REPO=$(pwd)
CODE=fdea8b8            # the commit the run started from: its prompts, segments and epoch plan
R=/work/runs/default-seed1
DATA=${DIALOGUELLM_DATA:-/work/shared/data}
STEP=$R/ray_results/adapter/local-checkpoints/last-step

if [ ! -f "$R/adapter/adapter_model.safetensors" ]; then
  if [ ! -d /work/runs/code-$CODE ]; then
    mkdir -p /work/runs/code-$CODE && git archive $CODE | tar -x -C /work/runs/code-$CODE
  fi
  if [ ! -f "$STEP/position.json" ]; then
    mkdir -p "$STEP" && cp "$REPO"/training/checkpoints/default-seed1/last-step/* "$STEP"/
  fi
  (cd /work/runs/code-$CODE && PYTHONPATH=$PWD DIALOGUELLM_DATA=$DATA OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    taskset -c 1 "$REPO"/.venv/bin/python -m training.train --config training/configs/smollm2-135m-cpu.yaml \
    --set optim.seed=1 --set output_dir=$R/adapter --storage $R/ray_results --resume "$STEP" >> $R/train.log 2>&1)
fi

export DIALOGUELLM_DATA=$DATA
B="$REPO"/.venv/bin/dialoguellm
$B average s0=training/default_adapter s1=$R/adapter --out /work/runs/avg2 --rank 16
$B calibrate avg2=/work/runs/avg2 --out /work/runs/avg2-cal
$B eval --dataset meld --split test --adapter avg2=/work/runs/avg2-cal --report /work/runs/avg2-meld-test.json
$B eval --dataset emorynlp --split dev --adapter avg2=/work/runs/avg2-cal --report /work/runs/avg2-emorynlp-dev.json
