"""Delete what Redis keeps of one conversation, on request (`dialoguellm forget`).

A conversation's texts are kept in three places: its context hash `IN_STREAM:ctx:ID` (expiring
`context_ttl_s` after its last turn), the entries of the input stream (until the stream is
trimmed) and those of the dead-letter stream. `forget` deletes the hash (DEL) and every entry of
those streams whose payload names the conversation (XRANGE in pages, XDEL); with `labels`, also
its entries in the labels and alerts streams (the emotions inferred, and the descriptions used).
Done markers (`IN_STREAM:GROUP:done:ENTRY_ID`) hold no text; the description cache is keyed by
video segment, not by conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from pipeline.core.wire import PAYLOAD, as_text
from pipeline.stream.context_store import context_key

PAGE = 1000


@dataclass(frozen=True)
class Forgotten:
    """What was (or, in a dry run, would be) deleted: the context hash, and entries per stream."""

    conversation_id: str
    context_turns: int
    entries: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.context_turns + sum(self.entries.values())


def conversation_of(fields: Any) -> str | None:
    """The conversation an entry belongs to, from its msgpack payload (None when it names none)."""
    payload = fields.get(PAYLOAD.encode(), fields.get(PAYLOAD))
    for _ in range(2):  # a dead letter of an entry without `payload` keeps all its fields as one map
        try:
            body = msgpack.unpackb(payload, raw=False) if isinstance(payload, bytes) else None
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            return None
        if not isinstance(body, dict):
            return None
        if "conversation_id" in body:
            return str(body["conversation_id"])
        payload = body.get(PAYLOAD)
    return None


def forget_conversations(redis: Any, conversation_ids: Sequence[str], context_prefix: str, streams: Sequence[str],
                         dry_run: bool = False) -> list[Forgotten]:
    """Delete each conversation's context hash and its entries in `streams` (one pass over each stream)."""
    wanted = set(conversation_ids)
    found: dict[str, dict[str, int]] = {cid: {} for cid in conversation_ids}
    for stream in streams:
        after = "-"
        while entries := redis.xrange(stream, min=after, count=PAGE):
            mine = [(as_text(entry_id), conversation_of(fields)) for entry_id, fields in entries]
            mine = [(entry_id, cid) for entry_id, cid in mine if cid in wanted]
            for _, cid in mine:
                found[cid][stream] = found[cid].get(stream, 0) + 1
            if mine and not dry_run:
                redis.xdel(stream, *(entry_id for entry_id, _ in mine))
            after = "(" + as_text(entries[-1][0])
    result = []
    for cid in conversation_ids:
        key = context_key(context_prefix, cid)
        turns = int(redis.hlen(key))
        if not dry_run:
            redis.delete(key)
        result.append(Forgotten(cid, turns, found[cid]))
    return result
