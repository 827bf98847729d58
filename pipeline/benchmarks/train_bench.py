"""`dialoguellm bench train`: tokens/s of our training function on a model of a given shape.

Builds a model of the shape with random weights (no weights are needed to time training), runs
`training.loop.run_training` directly (no Ray) for a bounded number of optimiser steps on MELD
train prompts, and sets the measured rate against the paper's run: LLaMA-2-7B, LoRA r=8 on
q/v, cutoff 256, about 5 hours on one 40 GB A100 for MELD + IEMOCAP + EmoryNLP.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

SHAPES = {
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3),
}
# Training turns of the paper's mix: MELD 9,989 + EmoryNLP 9,934 + IEMOCAP 5,810 (its common train split).
PAPER_TRAIN_TURNS = 9989 + 9934 + 5810
PAPER_HOURS = 5.0


def build_random_model(shape: str, folder: Path, tokenizer_dir: str, use_gpu: bool) -> Path:
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


def run_train_benchmark(shape: str, steps: int, batch_size: int, data: str | None, use_gpu: bool | None = None,
                        workdir: str | None = None) -> dict[str, Any]:
    import torch

    from training.config import DataSource, Optimisation, Scaling, TrainConfig
    from training.loop import run_training
    from workers.model_store import resolve_model

    use_gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{shape}-", dir=workdir))
    try:
        started = time.perf_counter()
        build_random_model(shape, folder, resolve_model(None), use_gpu)
        built = time.perf_counter() - started
        config = TrainConfig(
            model=str(folder), output_dir=str(folder / "out"), context_turns=2,
            train=(DataSource("meld", "train", data, limit=steps * batch_size),),
            dev=(),
            optim=replace(Optimisation(), batch_size=batch_size, gradient_accumulation=1, cutoff_len=256),
            scaling=Scaling(use_gpu=use_gpu),
        )
        metrics = run_training(config, max_steps=steps)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    tokens_per_s = metrics["train_tokens_per_s"]
    mean_tokens = metrics["train_tokens"] / max(1, metrics["train_examples"])
    epoch_hours = PAPER_TRAIN_TURNS * mean_tokens / tokens_per_s / 3600
    device = torch.cuda.get_device_name(0) if use_gpu else "cpu"
    result = {
        "shape": shape, "device": device, "steps": steps, "batch_size": batch_size,
        "train_tokens_per_s": round(tokens_per_s, 1), "mean_tokens_per_example": round(mean_tokens, 1),
        "paper_mix_epoch_hours": round(epoch_hours, 3), "paper_hours": PAPER_HOURS,
        "epochs_in_paper_time": round(PAPER_HOURS / epoch_hours, 2), "model_build_s": round(built, 1),
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if use_gpu else None,
    }
    print(f"bench train: {shape} with random weights on {device}, {steps} steps of {batch_size} examples")
    print(f"  {tokens_per_s:.0f} tokens/s; {mean_tokens:.0f} tokens per example")
    print(f"  one epoch of the paper's mix ({PAPER_TRAIN_TURNS} turns): {epoch_hours:.2f} h; "
          f"the paper's {PAPER_HOURS:.0f} h on one A100 would cover {PAPER_HOURS / epoch_hours:.1f} epochs here")
    return result
