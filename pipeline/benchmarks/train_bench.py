"""`dialoguellm bench train`: the plain training loop and the fast one, same examples, one run.

(a) the plain loop, as training ran before the fast path: random batches, every row padded to
    full length, full-vocabulary logits at every position, the answer tokens' LM loss, LoRA on
    every layer;
(b) the fast loop for the paper's prompt (z=2), as the previous default adapter trained: shared
    instruction prefix once per batch, length-bucketed batches, logits at the loss positions only,
    `label_ce`, LoRA on the top layers with the frozen layers below computed once per example.
(c) the conversation prompt's loop, as the shipped recipe trains: one pass per conversation (every
    previous turn shown), `label_ce` at every turn's slot, the same LoRA layers and frozen-layer
    cache as (b), batches of about as many turns as (b)'s.
All run over the same MELD train turns with the recipe's model and LoRA shape. (b)'s and (c)'s rates count their
one-off pass over the frozen layers; `fast_steady_samples_per_s` is an epoch after it, as every
further epoch runs. `conversation_ratio` is (c)'s turns/s over (b)'s, both first epochs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pipeline.benchmarks.common import bench_context_turns, log

SHAPES = {
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3),
}


def build_random_model(shape: str, folder: Path, tokenizer_dir: str, use_gpu: bool) -> Path:
    """A model of `shape` with random weights (timing does not depend on the weights)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False, **SHAPES[shape])
    with torch.device("cuda" if use_gpu else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if use_gpu else torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    return folder


def _time_loop(model_dir: str, requests: list, device: str, *, step: str, objective: str, top_layers: int | None,
               window: int, batch_size: int, epochs: int, recipe: Any, prompt: str,
               context_turns: int) -> dict[str, float]:
    """Seconds of set-up (frozen-layer pass) and of each epoch over `requests`; `batch_size` counts
    turns (a conversation step's batches hold whole conversations, about that many turns)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.core.prompter import Prompter
    from training.batching import plan_epoch
    from training.examples import encode_examples
    from training.steps import make_batch_loss

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    layers = model.config.num_hidden_layers
    split = layers - top_layers if top_layers else 0
    model = get_peft_model(model, LoraConfig(
        r=recipe.lora.r, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout,
        target_modules=list(recipe.lora.target_modules), task_type="CAUSAL_LM",
        layers_to_transform=list(range(split, layers)) if top_layers else None))
    prompter = Prompter(tokenizer, context_turns, recipe.max_model_len, prompt, recipe.window_step)
    examples, _ = encode_examples(requests, prompter)
    spaces = {name: prompter.space(name) for name in {e.label_set for e in examples}}
    loss_of = make_batch_loss(step, model, objective, spaces, tokenizer.eos_token_id, pad, split)
    started = time.perf_counter()
    loss_of.prepare(examples, lambda message: log(f"  {message}"))
    prepare_s = time.perf_counter() - started
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    lengths = [loss_of.computed_length(i) for i in range(loss_of.units)]
    groups = [loss_of.group(i) for i in range(loss_of.units)]
    per_batch = max(1, round(batch_size * loss_of.units / len(examples)))
    model.train()
    epoch_s, padding = [], 0.0
    for epoch in range(epochs):
        plan = plan_epoch(lengths, groups, per_batch, seed=epoch, window=window)
        padding = plan.padding_share
        started = time.perf_counter()
        for done, batch in enumerate(plan.batches, 1):
            loss, _ = loss_of.loss(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if done % 4 == 0 or done == len(plan.batches):
                elapsed = time.perf_counter() - started
                log(f"  epoch {epoch}: {done}/{len(plan.batches)} batches, ETA "
                    f"{elapsed / done * (len(plan.batches) - done):.0f} s")
        if device == "cuda":
            torch.cuda.synchronize()
        epoch_s.append(time.perf_counter() - started)
    return {"examples": len(examples), "prepare_s": prepare_s, "epoch_s": epoch_s, "padding_share": padding}


def run_train_benchmark(limit: int, device: str, data: str | None, recipe_path: str, batch_size: int = 16,
                        shape: str | None = None, workdir: str | None = None) -> dict[str, Any]:
    import shutil
    import tempfile

    import torch

    from training.config import DataSource, load_config
    from training.examples import requests_from
    from workers.model_store import resolve_model

    if device == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    recipe = load_config(recipe_path)
    source = (DataSource("meld", "train", data, limit=limit),)
    paper = {"prompt": "dialoguellm", "context_turns": bench_context_turns("dialoguellm")}  # whatever the recipe's
    conversation_turns = bench_context_turns("conversation")
    requests = requests_from(source, paper["context_turns"])
    conversation_requests = requests_from(source, conversation_turns)
    folder = None
    model_dir = resolve_model(recipe.model)
    if shape:
        folder = Path(tempfile.mkdtemp(prefix=f"bench-{shape}-", dir=workdir))
        model_dir = str(build_random_model(shape, folder, model_dir, device == "cuda"))
    try:
        log(f"bench train: {len(requests)} MELD train examples, batch {batch_size}, {device}, "
            f"model {shape or model_dir}")
        log("(a) plain loop: random batches, full logits, lm loss, LoRA on every layer")
        plain = _time_loop(model_dir, requests, device, step="plain", objective="lm", top_layers=None, window=1,
                           batch_size=batch_size, epochs=1, recipe=recipe, **paper)
        log(f"(b) fast loop: the paper prompt (z=2), {recipe.objective}, LoRA on the top {recipe.lora.top_layers or 'all'} layers")
        fast = _time_loop(model_dir, requests, device, step="fast", objective=recipe.objective,
                          top_layers=recipe.lora.top_layers, window=32, batch_size=batch_size, epochs=2, recipe=recipe,
                          **paper)
        log(f"(c) conversation loop: one pass per conversation, label_ce at every turn, LoRA on the top "
            f"{recipe.lora.top_layers or 'all'} layers")
        conversation = _time_loop(model_dir, conversation_requests, device, step="conversation",
                                  objective="label_ce", top_layers=recipe.lora.top_layers, window=32,
                                  batch_size=batch_size, epochs=1, recipe=recipe, prompt="conversation",
                                  context_turns=conversation_turns)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    n = plain["examples"]
    baseline = n / (plain["prepare_s"] + plain["epoch_s"][0])
    first = n / (fast["prepare_s"] + fast["epoch_s"][0])
    steady = n / fast["epoch_s"][1]
    conv = conversation["examples"] / (conversation["prepare_s"] + conversation["epoch_s"][0])
    result = {
        "examples": n, "batch_size": batch_size, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "baseline_samples_per_s": round(baseline, 3), "fast_samples_per_s": round(first, 3),
        "fast_steady_samples_per_s": round(steady, 3), "ratio": round(first / baseline, 2),
        "steady_ratio": round(steady / baseline, 2), "baseline_padding_share": round(plain["padding_share"], 3),
        "fast_padding_share": round(fast["padding_share"], 3), "fast_prepare_s": round(fast["prepare_s"], 1),
        "conversation_samples_per_s": round(conv, 3), "conversation_ratio": round(conv / first, 2),
        "recipe": recipe_path,
    }
    print(f"{'path':<44}{'samples/s':>10}{'x (a)':>7}{'padding':>9}")
    print(f"{'(a) plain loop':<44}{baseline:>10.2f}{1:>7.2f}{plain['padding_share']:>9.1%}")
    print(f"{'(b) fast loop, first epoch (frozen pass incl.)':<44}{first:>10.2f}{first / baseline:>7.2f}"
          f"{fast['padding_share']:>9.1%}")
    print(f"{'(b) fast loop, later epochs':<44}{steady:>10.2f}{steady / baseline:>7.2f}{fast['padding_share']:>9.1%}")
    print(f"{'(c) conversation loop, one pass each':<44}{conv:>10.2f}{conv / baseline:>7.2f}"
          f"{conversation['padding_share']:>9.1%}   x (b) {conv / first:.2f}")
    return result
