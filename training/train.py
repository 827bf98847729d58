"""`python -m training.train --config FILE`: LoRA fine-tuning under Ray Train's TorchTrainer.

Works the same locally (starts a Ray instance, or joins `RAY_ADDRESS`) and under
`ray job submit --working-dir . -- python -m training.train --config FILE`.
The best checkpoint by dev weighted-F1 is copied to `output_dir` as a PEFT adapter folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from pipeline.core.errors import DialogueLLMError
from training.checkpoints import POSITION_FILE, STATE_FILE, check_resume
from training.config import TrainConfig, TrainRunConfig, load_config
from training.loop import CONFIG_FILE, METRICS_FILE, train_loop

BEST_METRIC = "dev_weighted_f1"


def fit(config: TrainConfig, storage: str | None = None, max_failures: int = 2, resume: str | None = None,
        overwrite: bool = False) -> dict[str, Any]:
    """Run training with Ray Train; return the best checkpoint's metrics and where it was copied.

    `resume` is a step checkpoint folder (`<storage>/<run>/local-checkpoints/last-step`, written
    every `optim.checkpoint_every_s`): the run continues exactly where it stopped.
    """
    output = Path(config.output_dir)
    if resume is not None:
        check_resume(resume, config.to_dict())
    if output.exists() and not overwrite and not (output / CONFIG_FILE).is_file():
        raise DialogueLLMError(f"output_dir: {output} exists and is not an adapter folder this command wrote; "
                               "pass --overwrite to replace it")
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=True)
    scaling = config.scaling
    storage_path = Path(storage or Path(config.output_dir).parent / "ray_results").resolve()
    run_name = Path(config.output_dir).name
    # Ray Train's local mode (no workers) keeps no checkpoints of its own: the loop keeps them here.
    staging = storage_path / run_name / "local-checkpoints" if scaling.num_workers == 0 else None
    if staging is not None and staging.exists() and resume is None:
        if (staging / "last-step").is_dir() and not overwrite:
            # Hours of a stopped run would be lost: continuing it is the likelier wish.
            raise DialogueLLMError(f"{staging / 'last-step'} holds a stopped run's step checkpoint: pass "
                                   f"--resume {staging / 'last-step'} to continue it, or --overwrite to start again")
        shutil.rmtree(staging)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"config": config.to_dict(), "staging_dir": str(staging) if staging else None,
                           "resume": str(Path(resume).resolve()) if resume else None},
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
            accelerator_type=scaling.accelerator_type,
            resources_per_worker=scaling.resources_per_worker or None,
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage_path),
            checkpoint_config=CheckpointConfig(
                num_to_keep=2,
                checkpoint_score_attribute=BEST_METRIC if config.dev else "epoch",
                checkpoint_score_order="max",
            ),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    result = trainer.fit()
    if result.error:
        raise RuntimeError(f"training failed: {result.error}")
    if staging is not None:
        candidates = [(folder, json.loads((folder / METRICS_FILE).read_text())) for folder in staging.iterdir()
                      if (folder / METRICS_FILE).is_file()]
    else:
        candidates = [(Path(c.to_directory()), m) for c, m in result.best_checkpoints or [(result.checkpoint, result.metrics)]]
    key = BEST_METRIC if config.dev else "epoch"
    best_dir, best_metrics = max(candidates, key=lambda cm: (cm[1].get(key, 0), cm[1].get("epoch", 0)))
    if output.exists():
        shutil.rmtree(output)
    shutil.copytree(best_dir, output, ignore=shutil.ignore_patterns(STATE_FILE, POSITION_FILE))
    summary = {"adapter": str(output), "metrics": {k: v for k, v in best_metrics.items()
                                                     if isinstance(v, (int, float, str))}}
    (output / "train_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run(command: TrainRunConfig) -> dict[str, Any]:
    """What `dialoguellm train` and `python -m training.train` run: the YAML config with its `--set`
    overrides, validated, then `fit`."""
    return fit(load_config(command.config, command.overrides), command.storage, resume=command.resume,
               overwrite=command.overwrite)


def main(argv: list[str] | None = None) -> int:
    from pipeline.core.flags import add_config_flags, config_from_args

    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    add_config_flags(parser, TrainRunConfig)
    args = parser.parse_args(argv)
    try:
        summary = run(config_from_args(TrainRunConfig, args))
    except DialogueLLMError as e:
        print(f"dialoguellm: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
