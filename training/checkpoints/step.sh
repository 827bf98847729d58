#!/usr/bin/env bash
# A recipe run carried from session to session by its step checkpoint (training/configs/recipes/RUNS.md).
# From the repository root of a checkout of main:
#   nohup setsid training/checkpoints/step.sh run RUN > /work/logs/RUN.log 2>&1 &
#       starts RUN, or continues it exactly from its newest step checkpoint (the one in /work/runs/RUN,
#       else the one committed in training/checkpoints/RUN/last-step), then calibrates it on dev (into /work/runs/RUN-cal);
#   training/checkpoints/step.sh keep RUN
#       copies RUN's newest step checkpoint into training/checkpoints/RUN/last-step, for a later
#       session to continue from once it is committed.
# training/checkpoints/RUN/run.env names what the run executes: CODE (the commit it started from: its
# prompts, segments and epoch plan), CONFIG, SETS (its --set overrides, the same on every resume) and
# CORE (the cores it runs on, as taskset -c takes them: 1, or 0-1 for both, a thread each). Each stage
# prints progress with an ETA; the run itself logs to /work/runs/RUN/train.log.
set -euo pipefail
USAGE="usage: training/checkpoints/step.sh run|keep RUN"
[ $# -eq 2 ] && { [ "$1" = run ] || [ "$1" = keep ]; } || { echo "$USAGE" >&2; exit 2; }
VERB=$1
RUN=$2
REPO=$(pwd)
KEPT=$REPO/training/checkpoints/$RUN
# shellcheck source=/dev/null
source "$KEPT/run.env"
R=/work/runs/$RUN
DATA=${DIALOGUELLM_DATA:-/work/shared/data}
STEP=$R/ray_results/adapter/local-checkpoints/last-step

if [ "$VERB" = keep ]; then
  [ -f "$STEP/position.json" ] || { echo "$STEP holds no step checkpoint" >&2; exit 1; }
  mkdir -p "$KEPT/last-step" && cp "$STEP"/* "$KEPT/last-step"/
  echo "kept $(grep -oE '^  "(epoch|step)": [0-9]+' "$STEP/position.json" | tr -d '" ' | paste -sd ' ') in $KEPT/last-step: commit it"
  exit 0
fi

mkdir -p "$R"
if [ ! -f "$R/adapter/adapter_model.safetensors" ]; then
  if [ ! -d "/work/runs/code-$CODE" ]; then
    mkdir -p "/work/runs/code-$CODE" && git archive "$CODE" | tar -x -C "/work/runs/code-$CODE"
  fi
  if [ ! -f "$STEP/position.json" ] && [ -f "$KEPT/last-step/position.json" ]; then
    mkdir -p "$STEP" && cp "$KEPT"/last-step/* "$STEP"/
  fi
  RESUME=()
  [ -f "$STEP/position.json" ] && RESUME=(--resume "$STEP")
  THREADS=$(taskset -c "$CORE" nproc)  # one thread a core
  (cd "/work/runs/code-$CODE" && PYTHONPATH=$PWD DIALOGUELLM_DATA=$DATA OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS \
    taskset -c "$CORE" "$REPO"/.venv/bin/python -m training.train --config "$CONFIG" "${SETS[@]}" \
    --set output_dir="$R/adapter" --storage "$R/ray_results" "${RESUME[@]}" >> "$R/train.log" 2>&1)
fi

# Served at the window the adapter records; held-out dev figures to set beside the default's.
if [ -f "$R-cal/calibration.json" ]; then
  echo "$R-cal is calibrated already: its calibration.json has the figures"
else
  DIALOGUELLM_DATA=$DATA taskset -c "$CORE" "$REPO"/.venv/bin/dialoguellm calibrate "$RUN=$R/adapter" --out "$R-cal"
fi
