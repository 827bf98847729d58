"""`dialoguellm train`: LoRA fine-tuning with Ray Train from a YAML config."""

from __future__ import annotations

import json

from training.config import TrainRunConfig


def run_train(config: TrainRunConfig) -> int:
    from training.train import run

    print(json.dumps(run(config)))
    return 0
