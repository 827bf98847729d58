"""`dialoguellm bench engine`: our engine against transformers `generate`, same prompts, one run.

(a) the reference path: transformers `generate`, one prompt at a time, greedy, 4 new tokens;
(b) our engine in each decoding mode, and the levers (prompt order, prefix caching) one at a time.
FLOP/s is reported twice, both against the fp32 matmul rate measured in the same run:
"computed" counts the prompt tokens the engine actually ran (prefix-cache hits excluded), the
physical rate; "effective" counts every prompt token, the work the same turns would need with
no cache.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from pipeline.benchmarks.common import CONVERSATION_CONTEXT, ModelShape, bench_context_turns, log, matmul_gflops
from pipeline.core.datasets import load_dataset
from pipeline.core.evaluation import label_requests
from pipeline.core.predictions import LabelRequest

WARMUP_TURNS = 32



def transformers_baseline(model_dir: str, prompts: list[str], max_new_tokens: int = 4) -> float:
    """Turns/s of transformers `generate`, one prompt at a time, greedy (the reference code's path)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def run(model: Any, batch: list[str]) -> None:
        for prompt in batch:
            ids = tokenizer(prompt, return_tensors="pt")
            with torch.inference_mode():
                model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)

    run(model, prompts[:4])
    start = time.perf_counter()
    run(model, prompts)
    rate = len(prompts) / (time.perf_counter() - start)
    del model
    gc.collect()
    return rate


def _timed(engine: Any, prompts: list[str], decoding: str) -> tuple[float, float]:
    """Turns/s, and the share of prompt tokens computed (not served from the prefix cache)."""
    engine.llm.reset_prefix_cache()
    engine.stats.reset()
    start = time.perf_counter()
    engine.predict_prompts(prompts, "meld", decoding=decoding)
    rate = len(prompts) / (time.perf_counter() - start)
    return rate, 1 - engine.stats.cached_tokens / max(1, engine.stats.prompt_tokens)


Timing = tuple[float, float]  # turns/s, and the share (or count) of prompt tokens computed


def time_rows(rows: dict[str, Callable[[], Timing]], repeats: int) -> tuple[dict[str, Timing], dict[str, list[float]]]:
    """Each row timed `repeats` times, the rows taking turns, so a slow moment of the machine or an
    engine's first batches after its start fall on every row alike; a row reports its fastest
    timing (interference only ever slows a run), and every timing's turns/s is returned too."""
    timings: dict[str, list[Timing]] = {name: [] for name in rows}
    for _ in range(repeats):
        for name, run in rows.items():
            timings[name].append(run())
    return ({name: max(t) for name, t in timings.items()},
            {name: [round(rate, 3) for rate, _ in t] for name, t in timings.items()})


def paired_ratio(rates: Sequence[float], base_rates: Sequence[float]) -> float:
    """The median over rounds of one row's turns/s over another's in the same round: rows timed
    side by side share each round's state of the machine, so this reads their ratio without the
    drift between rounds that the best-of figures of each row carry."""
    import statistics

    return round(statistics.median(r / b for r, b in zip(rates, base_rates, strict=True)), 3)


def with_prompt(config: Any, prompt: str) -> Any:
    """The engine config with a benchmark's standard settings for `prompt`, whatever the default
    adapter was trained with (`bench_context_turns`)."""
    return replace(config, prompt=prompt, context_turns=bench_context_turns(prompt))


def round_robin(conversations: Sequence[Any], count: int) -> list[list[LabelRequest]]:
    """Rounds of turns as `count` live conversations send them: round r holds turn r of each
    conversation still going; context as the stream keeps it."""
    picked = list(conversations[:count])
    rounds: list[list[LabelRequest]] = []
    for r in range(max((len(c.turns) for c in picked), default=0)):
        rounds.append([LabelRequest(c.turns[r], c.context_of(r, CONVERSATION_CONTEXT), c.label_set)
                       for c in picked if r < len(c.turns)])
    return rounds


def _fed_turn_by_turn(engine: Any, rounds: list[list[LabelRequest]], prompter: Any, cold: bool) -> tuple[float, float]:
    """Turns/s and prompt tokens computed per turn, the rounds fed one after another (each
    conversation's previous prompts cached, or with `cold` the cache emptied before each round)."""
    ids = [prompter.build_all_ids(batch) for batch in rounds]
    engine.llm.reset_prefix_cache()
    engine.stats.reset()
    elapsed = 0.0
    for batch in ids:
        if cold:
            engine.llm.reset_prefix_cache()
        start = time.perf_counter()
        engine.predict_ids(batch, "meld")
        elapsed += time.perf_counter() - start
    turns = sum(len(b) for b in ids)
    return turns / elapsed, (engine.stats.prompt_tokens - engine.stats.cached_tokens) / turns


def conversation_rows(engine: Any, model_dir: str, config: Any, data: str | None, conversations: int,
                      repeats: int) -> dict[str, Any]:
    """The paper prompt (z=2) and the conversation prompt (every previous turn) on the same rounds,
    each row timed `repeats` times (`time_rows`)."""
    from pipeline.core.prompter import Prompter

    rounds = round_robin(load_dataset("meld", "test", data), conversations)
    paper = Prompter.from_model(model_dir, config.context_turns, config.max_model_len)
    conversation = Prompter.from_model(model_dir, CONVERSATION_CONTEXT, config.max_model_len, "conversation",
                                       config.window_step)
    turns = sum(len(b) for b in rounds)
    shown = [len(q.context) for b in rounds for q in b]
    log(f"  conversation rows: {turns} turns of {len(rounds[0]) if rounds else 0} MELD test conversations, "
        f"round robin")
    rows, timings = time_rows({
        "paper prompt (z=2)": lambda: _fed_turn_by_turn(engine, rounds, paper, cold=False),
        "conversation prompt, warm": lambda: _fed_turn_by_turn(engine, rounds, conversation, cold=False),
        "conversation prompt, cold": lambda: _fed_turn_by_turn(engine, rounds, conversation, cold=True),
    }, repeats)
    base = rows["paper prompt (z=2)"][0]
    print(f"{'prompt, fed turn by turn':<40}{'turns/s':>8}{'x paper':>9}{'computed tok/turn':>19}")
    for name, (rate, computed) in rows.items():
        print(f"{name:<40}{rate:>8.2f}{rate / base:>9.2f}{computed:>19.1f}")
    print(f"conversation prompt shows every previous turn (mean {sum(shown) / max(1, len(shown)):.1f}); "
          f"the paper prompt at most {config.context_turns}")
    paired = {kind: paired_ratio(timings[f"conversation prompt, {kind}"], timings["paper prompt (z=2)"])
              for kind in ("warm", "cold")}
    print(f"x paper, paired by round (median of {repeats}): warm {paired['warm']:.2f}, cold {paired['cold']:.2f}")
    return {
        "conversation_turns": turns,
        "conversation_rows": {k: {"turns_per_s": round(r, 3), "computed_tokens_per_turn": round(c, 1),
                                  "timings_turns_per_s": timings[k]} for k, (r, c) in rows.items()},
        "conversation_warm_ratio": round(rows["conversation prompt, warm"][0] / base, 3),
        "conversation_cold_ratio": round(rows["conversation prompt, cold"][0] / base, 3),
        "conversation_warm_ratio_paired": paired["warm"],
        "conversation_cold_ratio_paired": paired["cold"],
    }


def _in_order(engine: Any, config: Any, prompts: list[str]) -> Timing:
    """The engine timed with `config`'s prompt order (the prompt-order lever), then set back."""
    kept, engine.config = engine.config, config
    try:
        return _timed(engine, prompts, config.decoding)
    finally:
        engine.config = kept


def run_engine_benchmark(config: Any, limit: int, data: str | None, *, levers: bool, conversations: int,
                         repeats: int) -> dict[str, Any]:
    """Every row of `bench engine` in one run; the engines are started and warmed first and stay up
    together, so their rows take turns (`time_rows`)."""
    from pipeline.core.prompter import Prompter
    from workers.engine import EmotionEngine
    from workers.model_store import resolve_model

    adapted = config  # the default adapter's row: served as a command serves it (merged on a CPU)
    config = with_prompt(config, "dialoguellm")
    requests = label_requests(load_dataset("meld", "test", data), config.context_turns)
    timed, warm = requests[:limit], requests[limit : limit + WARMUP_TURNS]
    model_dir = resolve_model(config.model)
    prompter = Prompter.from_model(model_dir, config.context_turns, config.max_model_len)
    prompts, warm_prompts = prompter.build_all(timed), prompter.build_all(warm)
    tokens = [len(prompter.encode(p)) for p in prompts]
    shape = ModelShape.of(model_dir)
    flops = sum(shape.prompt_flops(t) for t in tokens)

    log(f"bench engine: {len(prompts)} MELD test turns, {sum(tokens) / len(tokens):.0f} prompt tokens each; "
        f"each row timed {repeats} times, rows taking turns")
    matmul = matmul_gflops()
    log(f"  fp32 matmul: {matmul:.0f} GFLOP/s")
    baseline = transformers_baseline(model_dir, prompts)
    log(f"  (a) transformers generate: {baseline:.2f} turns/s")

    config = replace(config, use_default_adapter=False, adapters={}, default_adapter=None)
    mode = config.decoding
    engine = EmotionEngine(config)
    other = served = None
    rows: dict[str, Callable[[], Timing]] = {
        m: (lambda m=m, e=engine: _timed(e, prompts, m)) for m in ("scoring", "choice")}
    order = "prompt_order_off" if config.sort_prompts else "prompt_order_on"
    rows[order] = lambda e=engine: _in_order(e, replace(config, sort_prompts=not config.sort_prompts), prompts)
    caching = "prefix_caching_off" if config.enable_prefix_caching else "prefix_caching_on"
    if levers:
        other = EmotionEngine(replace(config, enable_prefix_caching=not config.enable_prefix_caching))
        rows[caching] = lambda e=other: _timed(e, prompts, mode)
    if adapted.default_adapter is not None:
        # The adapter users get by default, served as the engine serves it (merged on a CPU).
        served = EmotionEngine(adapted)
        how = "merged" if served.merged else "LoRA"
        rows["default_adapter"] = lambda e=served: _timed(e, prompts, mode)
    for started in (engine, other, served):
        if started is not None:
            started.predict_prompts(warm_prompts, "meld")
    best_of, timings = time_rows(rows, repeats)
    rates = {m: best_of[m] for m in ("scoring", "choice")}
    lever_rates = {k: best_of[k] for k in (order, caching) if k in best_of}
    adapter_rate = best_of.get("default_adapter")
    for name, rates_seen in timings.items():
        log(f"  {name}: " + " ".join(f"{r:.2f}" for r in rates_seen) + " turns/s")
    conversation = conversation_rows(engine, model_dir, config, data, conversations, repeats)
    # Shut down together, at the end: an engine's shutdown takes down vLLM's process-wide
    # parallel groups, which the engines still up compute with.
    rows.clear()
    del engine, other, served
    gc.collect()

    best, best_computed = rates[mode]
    per_turn_gflop = flops / len(prompts) / 1e9
    table = [("(a) transformers generate", (baseline, 1.0))] + [(f"(b) engine, {m}", r) for m, r in rates.items()]
    table += [(f"    engine, {mode}, {k.replace('_', ' ')}", r) for k, r in lever_rates.items()]
    if adapter_rate is not None:
        table.append((f"(c) engine, {mode}, default adapter ({how})", adapter_rate))
    mean_tokens = sum(tokens) / len(tokens)
    print(f"{'path':<40}{'turns/s':>8}{'tok/s':>7}{'x (a)':>7}{'computed':>10}{'GFLOP/s':>9}{'% mm':>6}"
          f"{'eff. GFLOP/s':>13}{'% mm':>6}")
    for name, (rate, computed) in table:
        effective = rate * per_turn_gflop
        print(f"{name:<40}{rate:>8.2f}{rate * mean_tokens:>7.0f}{rate / baseline:>7.2f}{computed:>9.0%}"
              f"{effective * computed:>10.1f}{100 * effective * computed / matmul:>5.0f}%"
              f"{effective:>13.1f}{100 * effective / matmul:>5.0f}%")
    print(f"fp32 matmul {matmul:.1f} GFLOP/s; {len(prompts)} prompts of {mean_tokens:.0f} tokens; "
          f"computed = share of prompt tokens not served from the prefix cache; each row the fastest of "
          f"{repeats} timings, rows taking turns")
    adapter_paired = paired_ratio(timings["default_adapter"], timings[mode]) if adapter_rate else None
    if adapter_paired is not None:
        print(f"default adapter over the bare model, paired by round (median of {repeats}): {adapter_paired:.2f}")
    return {
        "engine_turns_per_s": round(best, 3),
        "baseline_turns_per_s": round(baseline, 3),
        "ratio": round(best / baseline, 3),
        "mode": mode,
        "matmul_gflops": round(matmul, 1),
        "achieved_gflops": round(best * per_turn_gflop * best_computed, 1),
        "effective_gflops": round(best * per_turn_gflop, 1),
        "computed_token_share": round(best_computed, 3),
        "turns": len(prompts),
        "mean_prompt_tokens": round(mean_tokens, 1),
        "modes_turns_per_s": {m: round(r[0], 3) for m, r in rates.items()},
        "levers_turns_per_s": {k: round(r[0], 3) for k, r in lever_rates.items()},
        "default_adapter_turns_per_s": round(adapter_rate[0], 3) if adapter_rate else None,
        "default_adapter_ratio": round(adapter_rate[0] / best, 3) if adapter_rate else None,
        "default_adapter_ratio_paired": adapter_paired,
        "default_adapter_merged": how == "merged" if adapter_rate else None,
        "repeats": repeats,
        "timings_turns_per_s": timings,
        **conversation,
    }
