"""`dialoguellm bench stream`: end-to-end turns/s through Redis and the worker, against the same
engine labelling the same prompts offline, in one run.

Offline: the pool's engine is handed the turns directly in batches of 256 (as `dialoguellm eval`
does). Stream: every turn is pushed to a fresh input stream (all at once, or at `--rate`), a
worker labels them; throughput runs from the first input entry's time to the last output's
(both Redis server time). Latency is each label's `latency_ms`. The prefix cache is emptied
before each run, so neither reuses the other's prompts.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from pipeline.benchmarks.common import log
from pipeline.core.context import select_context
from pipeline.core.datasets import load_dataset
from pipeline.core.predictions import LabelRequest
from pipeline.core.wire import LabelMessage, TurnMessage, entry_time_ms
from pipeline.stream.config import StreamConfig

OFFLINE_BATCH = 256



def stream_requests(data: str | None, z: int, limit: int | None,
                    conversations: int | None = None) -> list[LabelRequest]:
    """MELD test turns with the context the worker gives them: turns k − z … k − 1 by turn id.
    With `conversations`, that many conversations are live at once: their turns interleaved in
    time order (turn r of each, then turn r + 1), a new conversation starting when one ends."""
    by_conversation = []
    for conv in load_dataset("meld", "test", data):
        by_id = {t.turn_id: t for t in conv.turns}
        by_conversation.append([LabelRequest(t, select_context(t.turn_id, z, by_id), conv.label_set)
                                for t in conv.turns])
    if not conversations:
        return [q for turns in by_conversation for q in turns][:limit]
    waiting, live, requests = list(reversed(by_conversation)), [], []
    while (waiting or live) and (limit is None or len(requests) < limit):
        while waiting and len(live) < conversations:
            live.append(waiting.pop())
        requests += [turns.pop(0) for turns in live]
        live = [turns for turns in live if turns]
    return requests[:limit]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_stream_benchmark(pool: Any, config: StreamConfig, requests: list[LabelRequest],
                         rate: float | None = None) -> dict[str, Any]:
    import ray
    import redis

    from pipeline.stream.client import delete_keys
    from pipeline.stream.runner import BackgroundWorker

    actor = pool.actors.actors[0]
    log(f"bench stream: {len(requests)} MELD test turns, model {pool.model}")
    ray.get(actor.reset_prefix_cache.remote())
    start = time.perf_counter()
    for i in range(0, len(requests), OFFLINE_BATCH):
        ray.get(actor.label.remote(requests[i:i + OFFLINE_BATCH]))
    offline = len(requests) / (time.perf_counter() - start)
    log(f"  offline (engine, batches of {OFFLINE_BATCH}): {offline:.2f} turns/s")

    ray.get(actor.reset_prefix_cache.remote())
    client = redis.Redis.from_url(config.redis_url)
    messages = [TurnMessage.from_turn(q.turn, q.label_set) for q in requests]
    try:
        with BackgroundWorker(config, pool) as worker:
            ids = _push(client, config.in_stream, messages, rate)
            while client.xlen(config.out_stream) + client.xlen(config.dead_letter_stream) < len(ids):
                worker.check()
                time.sleep(0.05)
        entries = client.xrange(config.out_stream)
        dead = client.xrange(config.dead_letter_stream)
    finally:
        delete_keys(client, f"{config.in_stream}*")
        client.delete(config.out_stream)
    labels = [LabelMessage.decode(f) for _, f in entries]
    cached_ratio = worker.metrics.registry.get_sample_value("dialoguellm_prompt_tokens_cached_ratio")
    seen = Counter([x.source_id for x in labels] + [f[b"source_id"].decode() for _, f in dead])
    elapsed_s = (entry_time_ms(entries[-1][0].decode()) - entry_time_ms(ids[0])) / 1000
    stream = len(labels) / max(elapsed_s, 1e-3)
    latencies = [x.latency_ms for x in labels]
    result = {
        "turns": len(requests), "model": pool.model, "batch_size": config.batch_size,
        "push_rate": rate, "stream_turns_per_s": round(stream, 2), "offline_turns_per_s": round(offline, 2),
        "ratio": round(stream / offline, 3), "p50_ms": round(_percentile(latencies, 0.5), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1), "lost": len(set(ids) - set(seen)),
        "duplicated": sum(n - 1 for n in seen.values() if n > 1), "dead_lettered": len(dead),
        "prompt_tokens_cached_ratio": round(cached_ratio or 0.0, 3),
    }
    log(f"  stream (push → worker → labels, batch {config.batch_size}): {stream:.2f} turns/s = "
         f"{result['ratio']:.2f}x offline; latency p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms; "
         f"prefix cache served {result['prompt_tokens_cached_ratio']:.0%} of prompt tokens; "
         f"lost {result['lost']}, duplicated {result['duplicated']}, dead-lettered {len(dead)}")
    return result


def _push(client: Any, stream: str, messages: list[TurnMessage], rate: float | None) -> list[str]:
    ids: list[str] = []
    start = time.perf_counter()
    chunk = 1 if rate else 500
    for i in range(0, len(messages), chunk):
        pipe = client.pipeline(transaction=False)
        for m in messages[i:i + chunk]:
            pipe.xadd(stream, m.encode())
        ids += [x.decode() for x in pipe.execute()]
        if rate:
            time.sleep(max(0.0, start + len(ids) / rate - time.perf_counter()))
    return ids


def new_stream_names() -> dict[str, str]:
    prefix = f"dialoguellm:bench:{uuid.uuid4().hex[:8]}"
    return {"in_stream": f"{prefix}:turns", "out_stream": f"{prefix}:labels"}
