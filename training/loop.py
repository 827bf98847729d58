"""The training function Ray Train runs on each worker: LoRA on a causal LM, loss on answers only.

Each epoch ends with dev weighted-F1 (the metric code of `dialoguellm eval`) and a checkpoint
that is a PEFT adapter folder the engine loads directly, plus the optimiser state to resume.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.errors import PromptTooLongError
from training.config import TrainConfig

STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "dialoguellm_train_config.json"
METRICS_FILE = "metrics.json"


def train_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point (`train_loop_per_worker`): `{"config": ..., "staging_dir": ...}`."""
    from training.config import config_from_dict

    staging = loop_config.get("staging_dir")
    run_training(config_from_dict(loop_config["config"]), report=_ray_report, resume=_ray_checkpoint_dir(),
                 checkpoint_root=Path(staging) if staging else None)


def run_training(config: TrainConfig, report: Any = None, resume: Path | None = None,
                 max_steps: int | None = None, checkpoint_root: Path | None = None) -> dict[str, Any]:
    """Train; `report(metrics, checkpoint_dir)` is called after each epoch. Returns the last metrics.

    Checkpoints go to `checkpoint_root/epoch-N` and stay there (Ray Train's local mode keeps no
    copy of its own); without a root they go to a temporary folder removed once reported (Ray
    Train's distributed mode has uploaded it to storage by then).
    """
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    from pipeline.evaluation import evaluate
    from pipeline.prompter import Prompter
    from training.examples import batches, requests_from, tokenize
    from training.hf_scorer import TransformersScorer
    from workers.model_store import resolve_model

    rank, world = _rank_and_world()
    torch.manual_seed(config.optim.seed)
    use_gpu = config.scaling.use_gpu and torch.cuda.is_available()
    device = torch.device(f"cuda:{_local_rank()}" if use_gpu else "cpu")
    dtype = torch.bfloat16 if use_gpu else torch.float32
    model_dir = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=list(config.lora.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)

    prompter = Prompter(tokenizer, config.context_turns, config.optim.cutoff_len)
    train_examples, skipped = [], 0
    for request in requests_from(config.train, config.context_turns):
        try:
            train_examples.append(tokenize(request, prompter, tokenizer.eos_token_id))
        except PromptTooLongError:
            skipped += 1  # the target alone exceeds cutoff_len: left out, never cut
    dev_requests = [r for r in requests_from(config.dev, config.context_turns) if _fits(prompter, r)]
    _log(rank, f"{len(train_examples)} training examples ({skipped} over cutoff_len left out), "
               f"{len(dev_requests)} dev turns")

    optim = config.optim
    steps_per_epoch = math.ceil(len(train_examples) / world / optim.batch_size / optim.gradient_accumulation)
    total_steps = steps_per_epoch * optim.epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=optim.learning_rate, weight_decay=optim.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(optim.warmup_ratio * total_steps), total_steps)
    start_epoch = 0
    if resume is not None:
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(resume / "adapter_model.safetensors")))
        state = torch.load(resume / STATE_FILE, map_location=device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = state["epoch"] + 1
        _log(rank, f"resumed from {resume} at epoch {start_epoch}")

    trainable = model
    if world > 1:
        import ray.train.torch

        trainable = ray.train.torch.prepare_model(model, move_to_device=False)

    metrics: dict[str, Any] = {}
    steps_done = 0
    for epoch in range(start_epoch, optim.epochs):
        model.train()
        started, losses, tokens = time.perf_counter(), [], 0
        epoch_batches = batches(train_examples, optim.batch_size, pad_id, optim.seed + epoch, rank, world)
        for i, batch in enumerate(epoch_batches):
            tensors = {k: torch.tensor(v, device=device) for k, v in batch.items()}
            loss = trainable(**tensors).loss
            (loss / optim.gradient_accumulation).backward()
            losses.append(loss.item())
            tokens += int(tensors["attention_mask"].sum())
            if (i + 1) % optim.gradient_accumulation == 0 or i + 1 == len(epoch_batches):
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                steps_done += 1
                if steps_done % 10 == 0:
                    _log(rank, f"epoch {epoch} step {steps_done}/{total_steps} loss {sum(losses[-10:]) / len(losses[-10:]):.4f}")
            if max_steps is not None and steps_done >= max_steps:
                break
        seconds = time.perf_counter() - started
        metrics = {"epoch": epoch, "train_loss": sum(losses) / max(1, len(losses)),
                   "train_tokens_per_s": tokens / seconds, "train_seconds": seconds, "train_tokens": tokens,
                   "train_examples": len(losses) * optim.batch_size}
        if dev_requests:
            report_dict, _ = evaluate(TransformersScorer(model, prompter, pad_id), dev_requests)
            metrics.update(dev_weighted_f1=report_dict["weighted_f1"], dev_accuracy=report_dict["accuracy"],
                           dev_macro_f1=report_dict["macro_f1"])
        _log(rank, f"epoch {epoch} done: {json.dumps(metrics)}")
        folder = checkpoint_root / f"epoch-{epoch}" if checkpoint_root else Path(tempfile.mkdtemp())
        if rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(folder)
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch},
                       folder / STATE_FILE)
            (folder / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
            (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
        if report is not None:
            report(metrics, folder if rank == 0 else None)
        if checkpoint_root is None:
            shutil.rmtree(folder, ignore_errors=True)
        if max_steps is not None and steps_done >= max_steps:
            break
    return metrics


def _fits(prompter: Any, request: Any) -> bool:
    try:
        prompter.build(request)
        return True
    except PromptTooLongError:
        return False


def _rank_and_world() -> tuple[int, int]:
    try:
        import ray.train

        context = ray.train.get_context()
        return context.get_world_rank(), context.get_world_size()
    except Exception:  # noqa: BLE001 - outside a Ray Train worker
        return 0, 1


def _local_rank() -> int:
    try:
        import ray.train

        return ray.train.get_context().get_local_rank()
    except Exception:  # noqa: BLE001
        return 0


def _ray_checkpoint_dir() -> Path | None:
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    return Path(checkpoint.to_directory())


def _ray_report(metrics: dict[str, Any], adapter_dir: Path | None) -> None:
    import ray.train

    checkpoint = ray.train.Checkpoint.from_directory(str(adapter_dir)) if adapter_dir else None
    ray.train.report(metrics, checkpoint=checkpoint)


def _log(rank: int, message: str) -> None:
    if rank == 0:
        print(f"[train] {message}", flush=True)
