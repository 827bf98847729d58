"""A small client for the streams: push turns in, read labels out (takes any sync redis-py client).

    import redis
    from pipeline.stream.client import push_turn, read_labels

    r = redis.Redis()
    push_turn(r, "call-42", 0, "agent", "How can I help you today?")
    for entry_id, label in read_labels(r, block_ms=5000):
        print(label.turn_id, label.label, label.confidence)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.core.turns import Conversation, VideoSegment
from pipeline.core.wire import LabelMessage, TurnMessage, as_text
from pipeline.stream.config import DEFAULT_IN_STREAM, DEFAULT_OUT_STREAM


def push_turn(
    redis: Any, conversation_id: str, turn_id: int, speaker: str, text: str, *,
    video: VideoSegment | None = None, description: str | None = None, adapter: str | None = None,
    label_set: str = "meld", stream: str = DEFAULT_IN_STREAM,
) -> str:
    """Add one turn to the input stream; returns its entry id (the `source_id` of its label)."""
    message = TurnMessage(conversation_id, turn_id, speaker, text, video, description, adapter, label_set)
    return as_text(redis.xadd(stream, message.encode()))


def push_conversation(redis: Any, conversation: Conversation, stream: str = DEFAULT_IN_STREAM,
                      adapter: str | None = None) -> list[str]:
    """Push every turn of a conversation in order; returns their entry ids."""
    pipe = redis.pipeline(transaction=False)
    for turn in conversation.turns:
        pipe.xadd(stream, TurnMessage.from_turn(turn, conversation.label_set, adapter).encode())
    return [as_text(i) for i in pipe.execute()]


def push_turns(redis: Any, messages: list[TurnMessage], stream: str = DEFAULT_IN_STREAM,
               rate: float | None = None) -> int:
    """Push `messages` in order, at `rate` turns/s (None: as fast as pipelining allows)."""
    import time

    start = time.perf_counter()
    pipe = redis.pipeline(transaction=False)
    for n, message in enumerate(messages, start=1):
        pipe.xadd(stream, message.encode())
        if rate:
            pipe.execute()
            time.sleep(max(0.0, start + n / rate - time.perf_counter()))
        elif n % 500 == 0:
            pipe.execute()
    pipe.execute()
    return len(messages)


def follow_labels(redis: Any, stream: str = DEFAULT_OUT_STREAM, from_start: bool = False, count: int | None = None,
                  idle_timeout_s: float | None = None) -> Iterator[tuple[str, LabelMessage]]:
    """Labels as they arrive (after those already there with `from_start`), until `count` were
    given or none came for `idle_timeout_s`."""
    import time

    after, seen, last = ("0" if from_start else "$"), 0, time.monotonic()
    while count is None or seen < count:
        batch = read_labels(redis, stream, after, block_ms=1000, count=100)
        if not batch:
            if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                return
            continue
        last = time.monotonic()
        for entry_id, label in batch[: None if count is None else count - seen]:
            yield entry_id, label
            seen += 1
        after = batch[-1][0]


def read_labels(
    redis: Any, stream: str = DEFAULT_OUT_STREAM, after: str = "0", block_ms: int | None = None, count: int = 100,
) -> list[tuple[str, LabelMessage]]:
    """Labels written after entry id `after` ("0": from the start, "$": only new ones), oldest
    first, waiting up to `block_ms` for the first; pass the last id back to read on."""
    reply = redis.xread({stream: after}, count=count, block=block_ms)
    return [
        (as_text(entry_id), LabelMessage.decode(fields))
        for _, entries in reply or () for entry_id, fields in entries
    ]


def delete_keys(redis: Any, pattern: str) -> int:
    """Delete every key matching `pattern` (SCAN, then DEL in chunks); returns how many."""
    keys = list(redis.scan_iter(pattern, count=1000))
    for i in range(0, len(keys), 1000):
        redis.delete(*keys[i:i + 1000])
    return len(keys)
