"""Conversation context in Redis, so every worker of a group builds the same prompt for a turn.

Each conversation is a hash `{prefix}:ctx:{conversation_id}` of turn_id → msgpack
`{speaker, text}` (and `description` when the turn has one: the conversation prompt shows past
turns' descriptions), written when a worker reads the turn (before it is labelled) and expiring
`ttl_s` after the conversation's last write. Writing turn k deletes turn k − keep, so a
conversation holds about `keep` turns.

Out of order: the context of turn k is whatever of turns k − z … k − 1 has been read by any
worker when k is labelled. A turn labelled before one of those arrived is labelled with the
ones present and flagged `partial_context`; it is not relabelled later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from pipeline.core.context import context_ids
from pipeline.core.turns import Turn
from pipeline.core.wire import TurnMessage


def context_key(prefix: str, conversation_id: str) -> str:
    """The hash holding a conversation's turns (readers such as `watch` use it too)."""
    return f"{prefix}:ctx:{conversation_id}"


class ContextStore:
    """Writes turns as they are read and gives back the up to `z` turns before each."""

    def __init__(self, redis: Any, prefix: str, z: int, keep: int, ttl_s: int) -> None:
        self.redis, self.prefix, self.z, self.keep, self.ttl_s = redis, prefix, z, keep, ttl_s

    def key(self, conversation_id: str) -> str:
        return context_key(self.prefix, conversation_id)

    async def remember(self, turns: Sequence[TurnMessage]) -> None:
        """Store `turns` (one round trip, idempotent: a redelivered turn writes the same value)."""
        if not turns:
            return
        pipe = self.redis.pipeline(transaction=False)
        for t in turns:
            key = self.key(t.conversation_id)
            value = {"speaker": t.speaker, "text": t.text}
            if t.description is not None:
                value["description"] = t.description
            pipe.hset(key, str(t.turn_id), msgpack.packb(value))
            if t.turn_id >= self.keep:
                pipe.hdel(key, str(t.turn_id - self.keep))
            pipe.expire(key, self.ttl_s)
        await pipe.execute()

    async def contexts(self, turns: Sequence[TurnMessage]) -> list[tuple[tuple[Turn, ...], bool]]:
        """For each turn: its context (oldest first) and whether all of it was there."""
        if self.z == 0 or not turns:
            return [((), True) for _ in turns]
        pipe = self.redis.pipeline(transaction=False)
        wanted = []
        for t in turns:
            ids = list(context_ids(t.turn_id, self.z))
            wanted.append(ids)
            if ids:
                pipe.hmget(self.key(t.conversation_id), [str(i) for i in ids])
        replies = iter(await pipe.execute())
        result = []
        for t, ids in zip(turns, wanted):
            values = next(replies) if ids else []
            context = tuple(
                Turn(t.conversation_id, i, **msgpack.unpackb(v, raw=False))
                for i, v in zip(ids, values) if v is not None
            )
            result.append((context, len(context) == len(ids)))
        return result
