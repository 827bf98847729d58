"""The training function Ray Train runs on each worker: LoRA on a causal LM, loss on the answer only.

Each epoch ends with dev weighted-F1 (the metric code of `dialoguellm eval`, on the probabilities
the engine's scoring mode serves), a temperature per label set fitted on dev, and a checkpoint that
is a PEFT adapter folder the engine loads directly. Between epochs, step checkpoints every few
minutes let `--resume` continue exactly where a run stopped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from training.config import TrainConfig

CONFIG_FILE = "dialoguellm_train_config.json"
METRICS_FILE = "metrics.json"
STEP_CHECKPOINT = "last-step"


def train_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point (`train_loop_per_worker`): `{"config", "staging_dir", "resume"}`."""
    from training.config import config_from_dict

    staging = loop_config.get("staging_dir")
    resume = Path(loop_config["resume"]) if loop_config.get("resume") else _ray_checkpoint_dir()
    run_training(config_from_dict(loop_config["config"]), report=_ray_report, resume=resume,
                 checkpoint_root=Path(staging) if staging else None)


def run_training(config: TrainConfig, report: Any = None, resume: Path | None = None,
                 max_steps: int | None = None, checkpoint_root: Path | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train; `report(metrics, checkpoint_dir)` is called after each epoch. Returns the last metrics.

    Epoch checkpoints go to `checkpoint_root/epoch-N` and stay there (Ray Train's local mode keeps
    no copy of its own); without a root they go to a temporary folder removed once reported (Ray
    Train's distributed mode has uploaded it to storage by then). Step checkpoints go to
    `checkpoint_root/last-step`. `resume` is a step or epoch checkpoint folder.
    """
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    from pipeline.core.prompter import Prompter
    from training.batching import plan_epoch
    from training.checkpoints import Position, load_step_checkpoint, save_step_checkpoint
    from training.examples import encode_examples, requests_from
    from training.prefix_runner import supports_fast_path
    from training.steps import make_batch_loss
    from workers.model_store import resolve_model

    rank, world = _rank_and_world()
    say = log or (lambda message: _log(rank, message))
    torch.manual_seed(config.optim.seed)
    use_gpu = config.scaling.use_gpu and torch.cuda.is_available()
    if not use_gpu and world == 1:
        # Ray gives its processes OMP_NUM_THREADS=1; a lone CPU trainer computes on every core.
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    device = torch.device(f"cuda:{_local_rank()}" if use_gpu else "cpu")
    dtype = torch.bfloat16 if use_gpu else torch.float32
    model_dir = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    layers = base.config.num_hidden_layers
    top = config.lora.top_layers
    if top is not None and top > layers:
        raise ConfigError(f"lora.top_layers: the model has {layers} layers, got {top}")
    if config.optim.step == "fast" and not supports_fast_path(base.config.model_type):
        raise ConfigError(f"optim.step: fast does not support {base.config.model_type!r} models; use plain")
    split = layers - top if top else 0
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=list(config.lora.target_modules), task_type="CAUSAL_LM",
                      layers_to_transform=list(range(split, layers)) if top else None)
    if config.init_adapter is not None:
        # Continue from an adapter: its weights, the same LoRA shape (checked with the config).
        from training.config import init_adapter_dir

        folder = init_adapter_dir(config.init_adapter)
        saved = LoraConfig.from_pretrained(str(folder))
        saved.lora_dropout, saved.inference_mode = config.lora.dropout, False
        model = PeftModel.from_pretrained(base, str(folder), config=saved, is_trainable=True)
        say(f"starting from the adapter in {folder}")
    else:
        model = get_peft_model(base, lora)

    prompter = Prompter(tokenizer, config.context_turns, config.max_model_len, config.prompt, config.window_step)
    train_examples, skipped = encode_examples(requests_from(config.train, config.context_turns, config.optim.seed),
                                              prompter)
    dev_examples, _ = encode_examples(requests_from(config.dev, config.context_turns), prompter)
    spaces = {name: prompter.space(name) for name in {e.label_set for e in train_examples + dev_examples}}
    weights = train_class_weights(train_examples, spaces, config.class_weight_power)
    kind = step_kind(config)
    say(f"{len(train_examples)} training examples ({skipped} over max_model_len left out), "
        f"{len(dev_examples)} dev turns; prompt {config.prompt}, objective {config.objective}, step {kind}, "
        f"LoRA on layers {split}-{layers - 1}" + (f", class weights {json.dumps(weights)}" if weights else ""))
    step = make_batch_loss(kind, model, config.objective, spaces, tokenizer.eos_token_id, pad_id, split,
                           class_weights=weights)
    step.prepare(train_examples, say)
    if step.units != len(train_examples):
        say(f"{len(train_examples)} turns in {step.units} passes (conversation segments)")
    dev_step = None
    if dev_examples:
        dev_step = make_batch_loss(kind, model, "label_ce", spaces, tokenizer.eos_token_id, pad_id, split)
        dev_step.prepare(dev_examples, say)
    lengths = [step.computed_length(i) for i in range(step.units)]
    groups = [step.group(i) for i in range(step.units)]

    optim = config.optim

    def plan(epoch: int) -> Any:
        return plan_epoch(lengths, groups, optim.batch_size, optim.seed + epoch, rank, world)

    steps_per_epoch = math.ceil(len(plan(0).batches) / optim.gradient_accumulation)
    total_steps = steps_per_epoch * optim.epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=optim.learning_rate, weight_decay=optim.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(optim.warmup_ratio * total_steps), total_steps)
    position = Position()
    if resume is not None:
        position = load_step_checkpoint(resume, model, optimizer, scheduler)
        say(f"resumed from {resume} at epoch {position.epoch}, batch {position.batch}, step {position.step}")

    params = [p for p in model.parameters() if p.requires_grad]
    step_dir = checkpoint_root / STEP_CHECKPOINT if checkpoint_root else None
    metrics: dict[str, Any] = {}
    steps_done = position.step
    run_started = last_checkpoint = last_log = time.perf_counter()
    steps_at_start = steps_done
    for epoch in range(position.epoch, optim.epochs):
        epoch_plan = plan(epoch)
        say(f"epoch {epoch}: {len(epoch_plan.batches)} batches, padding {epoch_plan.padding_share:.1%} of "
            f"{epoch_plan.padded_tokens} token positions")
        model.train()
        started, losses, tokens, seen = time.perf_counter(), [], 0, 0
        first = position.batch if epoch == position.epoch else 0
        done = first
        for i in range(first, len(epoch_plan.batches)):
            loss, computed = step.loss(epoch_plan.batches[i])
            seen += sum(len(step.members(u)) for u in epoch_plan.batches[i])
            done = i + 1
            (loss / optim.gradient_accumulation).backward()
            losses.append(loss.item())
            tokens += computed
            if (i + 1) % optim.gradient_accumulation and i + 1 != len(epoch_plan.batches):
                continue
            if world > 1:
                _average_gradients(params, world)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            steps_done += 1
            now = time.perf_counter()
            if now - last_log >= 30 or steps_done == total_steps:
                rate = (now - run_started) / max(1, steps_done - steps_at_start)
                recent = losses[-20:]
                say(f"epoch {epoch} step {steps_done}/{total_steps} loss {sum(recent) / len(recent):.4f} "
                    f"{tokens / (now - started):.0f} tokens/s, ETA {_duration(rate * (total_steps - steps_done))}")
                last_log = now
            due = now - last_checkpoint >= optim.checkpoint_every_s or (
                optim.checkpoint_every_steps and steps_done % optim.checkpoint_every_steps == 0)
            if step_dir is not None and rank == 0 and due:
                save_step_checkpoint(step_dir, model, optimizer, scheduler, Position(epoch, i + 1, steps_done),
                                     config.to_dict())
                last_checkpoint = time.perf_counter()
            if max_steps is not None and steps_done >= max_steps:
                break
        seconds = time.perf_counter() - started
        metrics = {"epoch": epoch, "train_loss": sum(losses) / max(1, len(losses)),
                   "train_tokens_per_s": tokens / seconds, "train_seconds": seconds, "train_tokens": tokens,
                   "train_examples": seen, "padding_share": epoch_plan.padding_share}
        calibration: dict[str, float] = {}
        decisions: dict[str, dict[str, float]] = {}
        if dev_step is not None:
            dev_metrics, calibration, decisions = evaluate_dev(dev_step, dev_examples, spaces, weights,
                                                               config.decision_rule == "fitted",
                                                               objectives=config.decision_objective)
            metrics.update(dev_metrics)
        say(f"epoch {epoch} done: {json.dumps(metrics)}")
        folder = checkpoint_root / f"epoch-{epoch}" if checkpoint_root else Path(tempfile.mkdtemp())
        if rank == 0:
            # An epoch checkpoint is also a step checkpoint: Ray Train restarts a failed run from it.
            finished = done == len(epoch_plan.batches)
            save_step_checkpoint(folder, model, optimizer, scheduler,
                                 Position(epoch + 1, 0, steps_done) if finished else Position(epoch, done, steps_done),
                                 config.to_dict())
            describe_adapter(folder, config, calibration, metrics, weights, decisions)
        if report is not None:
            report(metrics, folder if rank == 0 else None)
        if checkpoint_root is None:
            shutil.rmtree(folder, ignore_errors=True)
        if max_steps is not None and steps_done >= max_steps:
            break
    return metrics


def step_kind(config: TrainConfig) -> str:
    """The batch loss a config trains with: the conversation prompt's fast step is one pass per conversation."""
    from training.steps import CONVERSATION_STEP

    return CONVERSATION_STEP if config.prompt == "conversation" and config.optim.step == "fast" else config.optim.step


def train_class_weights(examples: Sequence[Any], spaces: dict[str, Any], power: float) -> dict[str, dict[str, float]]:
    """Per label set, the class weights of its training turns' gold labels (none when power is 0)."""
    from collections import Counter

    from pipeline.core.decision import class_weights

    if not power:
        return {}
    counts: dict[str, Counter] = {}
    for e in examples:
        counts.setdefault(e.label_set, Counter())[e.label] += 1
    return {name: class_weights(c, spaces[name].labels, power) for name, c in sorted(counts.items())}


def evaluate_dev(dev_step: Any, examples: Sequence[Any], spaces: dict[str, Any],
                 class_weights: dict[str, dict[str, float]] | None = None, fit_decision: bool = False,
                 batch_size: int = 32, objectives: Mapping[str, str] | None = None
                 ) -> tuple[dict[str, Any], dict[str, float], dict[str, dict[str, float]]]:
    """Dev figures per label set (and the mean weighted-F1) from the probabilities as served, the
    temperature per label set that calibrates them and, with `fit_decision`, the decision weights
    (for each label set's objective in `objectives`, balanced where it names none).

    As served: the model's label probabilities with the class weights divided out, then calibrated.
    """

    from pipeline.core.calibration import expected_calibration_error
    from pipeline.core.decision import decide, fit_serving, objective_for, undo_class_weights
    from pipeline.core.labels import get_label_set, negative_labels
    from pipeline.core.metrics import classification_report, headline
    from training.batching import plan_epoch

    class_weights = class_weights or {}
    batch_size = max(1, batch_size if dev_step.units == len(examples) else batch_size // 8)
    dev_step.model.eval()
    probs: list[list[float]] = [[] for _ in examples]
    lengths = [dev_step.computed_length(u) for u in range(dev_step.units)]
    groups = [dev_step.group(u) for u in range(dev_step.units)]
    for batch in plan_epoch(lengths, groups, batch_size, seed=0).batches:
        rows = dev_step.probabilities(batch).tolist()
        members = [i for u in batch for i in dev_step.members(u)]
        for i, row in zip(members, rows, strict=True):
            labels = spaces[examples[i].label_set].labels
            raw = dict(zip(labels, row[: len(labels)], strict=True))
            unweighted = undo_class_weights(raw, class_weights.get(examples[i].label_set, {}))
            probs[i] = [unweighted[label] for label in labels]
    dev_step.model.train()
    metrics: dict[str, Any] = {}
    temperatures: dict[str, float] = {}
    decisions: dict[str, dict[str, float]] = {}
    scores = []
    for name in sorted({e.label_set for e in examples}):
        indices = [i for i, e in enumerate(examples) if e.label_set == name]
        labels = spaces[name].labels
        gold = [labels.index(examples[i].label) for i in indices]
        temperatures[name], decision, served, held_out = fit_serving(
            [probs[i] for i in indices], gold, labels, negative_labels(spaces[name]), fit_decision,
            objective_for(objectives, name))
        if decision is not None:
            decisions[name] = decision
        chosen = [labels.index(decide(p, decisions.get(name))) for p in served]
        report = classification_report([examples[i].label for i in indices], [labels[c] for c in chosen],
                                       get_label_set(name))
        metrics.update({f"dev_{key}_{name}": value for key, value in headline(report).items()})
        metrics[f"dev_micro_f1_without_neutral_{name}"] = report["micro_f1_without_neutral"]
        metrics[f"dev_accuracy_{name}"] = report["accuracy"]
        metrics[f"dev_ece_{name}"] = expected_calibration_error(
            [p[labels[c]] for p, c in zip(served, chosen, strict=True)], [c == g for c, g in zip(chosen, gold, strict=True)])
        metrics[f"temperature_{name}"] = temperatures[name]
        if held_out is not None:
            # The rule was fitted on these turns: its figures here flatter it; these do not.
            estimate = classification_report([examples[i].label for i in indices], [labels[c] for c in held_out],
                                             get_label_set(name))
            metrics.update({f"dev_held_out_{key}_{name}": value for key, value in headline(estimate).items()})
        scores.append(report["weighted_f1"])
    metrics["dev_weighted_f1"] = sum(scores) / len(scores)
    return metrics, temperatures, decisions


def describe_adapter(folder: Path, config: TrainConfig, temperatures: dict[str, float],
                     metrics: dict[str, Any], class_weights: dict[str, dict[str, float]] | None = None,
                     decisions: dict[str, dict[str, float]] | None = None) -> None:
    """Beside the PEFT files, what serving needs to match training: the prompt settings it was
    trained with, the dev-fitted temperatures, the class weights to divide out and the decision
    weights; and the run's config and metrics."""
    from workers.adapters import AdapterMeta, write_adapter_meta

    write_adapter_meta(folder, AdapterMeta(context_turns=config.context_turns, max_model_len=config.max_model_len,
                                           temperatures=temperatures, prompt=config.prompt,
                                           window_step=config.window_step, class_weights=class_weights or {},
                                           decision_weights=decisions or {}))
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2))


def _average_gradients(params: Sequence[Any], world: int) -> None:
    """Data parallelism across Ray Train workers: the mean gradient on every worker."""
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


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
