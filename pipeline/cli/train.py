"""`dialoguellm train`: LoRA fine-tuning with Ray Train from a YAML config."""

from __future__ import annotations

import json

from pipeline.cli.configs import TrainRunConfig


def run_train(config: TrainRunConfig) -> int:
    from training.config import load_config
    from training.train import fit

    summary = fit(load_config(config.config, config.overrides), config.storage, resume=config.resume, overwrite=config.overwrite)
    print(json.dumps(summary))
    return 0
