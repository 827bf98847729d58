"""`dialoguellm bench engine`: our engine against transformers `generate`, same prompts, one run.

(a) the reference path: transformers `generate`, one prompt at a time, greedy, 4 new tokens;
(b) our engine in each decoding mode, and the levers (prompt order, prefix caching) one at a time.
FLOP/s counts the work of every prompt token (what the model would compute with no cache),
set against the fp32 matmul rate measured in the same run.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import replace
from typing import Any

from pipeline.datasets import load_dataset
from pipeline.evaluation import label_requests
from pipeline.benchmarks.common import ModelShape, matmul_gflops

WARMUP_TURNS = 32


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def transformers_baseline(model_dir: str, prompts: list[str], max_new_tokens: int = 4) -> float:
    """Turns/s of transformers `generate`, one prompt at a time, greedy (the reference code's path)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def run(batch: list[str]) -> None:
        for prompt in batch:
            ids = tokenizer(prompt, return_tensors="pt")
            with torch.inference_mode():
                model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)

    run(prompts[:4])
    start = time.perf_counter()
    run(prompts)
    rate = len(prompts) / (time.perf_counter() - start)
    del model
    gc.collect()
    return rate


def _timed(engine: Any, prompts: list[str], decoding: str) -> float:
    engine.llm.reset_prefix_cache()
    start = time.perf_counter()
    engine.predict_prompts(prompts, "meld", decoding=decoding)
    return len(prompts) / (time.perf_counter() - start)


def run_engine_benchmark(config: Any, limit: int, data: str | None, levers: bool = True) -> dict[str, Any]:
    from pipeline.prompter import Prompter
    from workers.engine import EmotionEngine
    from workers.model_store import resolve_model

    requests = label_requests(load_dataset("meld", "test", data), config.context_turns)
    timed, warm = requests[:limit], requests[limit : limit + WARMUP_TURNS]
    model_dir = resolve_model(config.model)
    prompter = Prompter.from_model(model_dir, config.context_turns, config.max_model_len)
    prompts, warm_prompts = prompter.build_all(timed), prompter.build_all(warm)
    tokens = [len(prompter.encode(p)) for p in prompts]
    shape = ModelShape.of(model_dir)
    flops = sum(shape.prompt_flops(t) for t in tokens)

    _log(f"bench engine: {len(prompts)} MELD test turns, {sum(tokens) / len(tokens):.0f} prompt tokens each")
    matmul = matmul_gflops()
    _log(f"  fp32 matmul: {matmul:.0f} GFLOP/s")
    baseline = transformers_baseline(model_dir, prompts)
    _log(f"  (a) transformers generate: {baseline:.2f} turns/s")

    engine = EmotionEngine(config)
    engine.predict_prompts(warm_prompts, "meld")
    rates = {mode: _timed(engine, prompts, mode) for mode in ("scoring", "choice")}
    engine.config = replace(config, sort_prompts=not config.sort_prompts)
    lever_rates = {"prompt_order_off" if config.sort_prompts else "prompt_order_on":
                   _timed(engine, prompts, config.decoding)}
    engine.config = config
    if levers:
        del engine
        gc.collect()
        other = EmotionEngine(replace(config, enable_prefix_caching=not config.enable_prefix_caching))
        other.predict_prompts(warm_prompts, "meld")
        key = "prefix_caching_off" if config.enable_prefix_caching else "prefix_caching_on"
        lever_rates[key] = _timed(other, prompts, config.decoding)

    mode = config.decoding
    best = rates[mode]
    per_turn_flops = flops / len(prompts)
    rows = [("(a) transformers generate", baseline)] + [(f"(b) engine, {m}", r) for m, r in rates.items()]
    rows += [(f"    engine, {mode}, {k.replace('_', ' ')}", r) for k, r in lever_rates.items()]
    print(f"{'path':<44}{'turns/s':>9}{'tok/s':>9}{'x (a)':>8}{'GFLOP/s':>9}{'% matmul':>10}")
    mean_tokens = sum(tokens) / len(tokens)
    for name, rate in rows:
        gflops = rate * per_turn_flops / 1e9
        print(f"{name:<44}{rate:>9.2f}{rate * mean_tokens:>9.0f}{rate / baseline:>8.2f}"
              f"{gflops:>9.1f}{100 * gflops / matmul:>9.0f}%")
    return {
        "engine_turns_per_s": round(best, 3),
        "baseline_turns_per_s": round(baseline, 3),
        "ratio": round(best / baseline, 3),
        "mode": mode,
        "matmul_gflops": round(matmul, 1),
        "achieved_gflops": round(best * per_turn_flops / 1e9, 1),
        "turns": len(prompts),
        "mean_prompt_tokens": round(mean_tokens, 1),
        "modes_turns_per_s": {m: round(r, 3) for m, r in rates.items()},
        "levers_turns_per_s": {k: round(r, 3) for k, r in lever_rates.items()},
    }
