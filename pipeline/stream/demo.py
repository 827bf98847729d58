"""The streaming demo (`make demo`): one MELD test conversation through the worker, end to end.

The worker runs in a thread of this process on fresh streams; the conversation is pushed, each
label printed as it arrives beside the gold label, the worker stopped cleanly and the demo's keys
deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.core.turns import Conversation
from pipeline.stream.config import StreamConfig


def format_label(label: Any, gold: str | None = None, text: str | None = None) -> str:
    """One readable line for a label (the three most probable labels, flags, latency); a context-only
    turn (a speaker `--label-speakers` leaves out) reads "not labelled" with its speaker."""
    if label.label is None:
        top = f"(context only: {label.speaker or 'speaker'} not labelled)"
    else:
        top = "  ".join(f"{name} {p:.2f}" for name, p in sorted(label.probs.items(), key=lambda kv: -kv[1])[:3])
    name = "-" if label.label is None else label.label
    parts = [f"{label.conversation_id}/{label.turn_id}", f"{name:<9}", top, f"{label.latency_ms:.0f} ms"]
    if gold:
        parts.insert(2, f"(gold {gold})")
    if label.flags:
        parts.append("[" + ",".join(label.flags) + "]")
    line = "  ".join(parts)
    return f"{line}\n    {text}" if text else line


def decision_note(weights: dict[str, float] | None) -> str | None:
    """One line saying why a printed label need not be the most probable one: the adapter's decision
    weights (`None` when it has none, or all are 1)."""
    if not weights or all(w == 1.0 for w in weights.values()):
        return None
    shown = ", ".join(f"{name} x{w:.2f}" for name, w in sorted(weights.items(), key=lambda kv: -kv[1]) if w != 1.0)
    return (f"labels: the largest p x w, w the adapter's decision weights fitted on dev ({shown}), so that "
            f"fewer negative turns are missed; the probabilities printed are the calibrated p")


def run_demo(conversation: Conversation, config: StreamConfig, pool: Any, say: Callable[[str], None]) -> dict[str, int]:
    """Label `conversation` through a worker on `config`'s (fresh) streams; returns the counts."""
    import redis

    from pipeline.stream.client import delete_keys, push_conversation, read_labels
    from pipeline.stream.runner import BackgroundWorker

    client = redis.Redis.from_url(config.redis_url)
    prefix = config.in_stream.rsplit(":", 1)[0]
    try:
        with BackgroundWorker(config, pool) as worker:
            push_conversation(client, conversation, config.in_stream)
            say(f"pushed MELD test conversation {conversation.conversation_id} ({len(conversation.turns)} turns)")
            turns = {t.turn_id: t for t in conversation.turns}
            after, seen, right, dead = "0", 0, 0, 0
            while seen + dead < len(turns):
                dead = client.xlen(config.dead_letter_stream)
                worker.check()
                for after, label in read_labels(client, config.out_stream, after, block_ms=1000):
                    turn = turns[label.turn_id]
                    say(format_label(label, turn.label, f"{turn.speaker}: {turn.text}"))
                    seen += 1
                    right += label.label == turn.label
        say(f"worker stopped cleanly: {seen} turns labelled ({right} as the gold label), {dead} dead-lettered")
        return {"labelled": seen, "right": right, "dead_lettered": dead}
    finally:
        delete_keys(client, f"{prefix}:*")
