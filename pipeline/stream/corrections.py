"""Reading the corrections stream and what the context store still keeps (`corrections export`).

Read-only: XRANGE over the corrections stream (in pages) and HGETALL of the corrected
conversations' context hashes, for texts a correction was made without.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack

from pipeline.core.wire import CorrectionMessage, as_text
from pipeline.stream.context_store import context_key

PAGE = 1000


def read_corrections(redis: Any, stream: str) -> tuple[list[CorrectionMessage], int]:
    """Every correction in stream order, and how many entries were not readable corrections."""
    found, skipped, after = [], 0, "-"
    while entries := redis.xrange(stream, min=after, count=PAGE):
        for _, fields in entries:
            try:
                found.append(CorrectionMessage.decode(fields))
            except (ValueError, TypeError, AttributeError, KeyError):
                skipped += 1
        after = "(" + as_text(entries[-1][0])
    return found, skipped


def stored_turns(redis: Any, in_stream: str, conversation_ids: Iterable[str]) -> dict[str, dict[int, tuple[str, str]]]:
    """Per conversation, the turns its context hash still holds: turn id -> (speaker, text)."""
    ids = sorted(set(conversation_ids))
    pipe = redis.pipeline(transaction=False)
    for cid in ids:
        pipe.hgetall(context_key(in_stream, cid))
    out: dict[str, dict[int, tuple[str, str]]] = {}
    for cid, stored in zip(ids, pipe.execute(), strict=True):
        turns = {}
        for k, v in stored.items():
            try:
                value, turn_id = msgpack.unpackb(v, raw=False), int(k)
            except (ValueError, TypeError):
                continue
            if isinstance(value, dict) and isinstance(value.get("text"), str):
                turns[turn_id] = (str(value.get("speaker", "")), value["text"])
        out[cid] = turns
    return out
