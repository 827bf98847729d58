"""The Redis side of the worker: read and claim entries of a consumer group, commit their outcomes.

Committing writes each entry's output (or dead letter) and its XACK in one MULTI/EXEC, guarded
by a per-entry marker key under WATCH: an entry delivered twice (a claim racing a slow worker,
a retry after a lost connection) yields one output entry, whichever worker commits first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.stream.ack_policy import Action, Decision
from pipeline.stream.config import StreamConfig
from pipeline.wire import DeadLetter, LabelMessage, as_text, original_payload


@dataclass(frozen=True)
class Entry:
    """An input entry as delivered to this consumer; `fields` is None when it was deleted from the stream."""

    id: str
    fields: dict | None
    deliveries: int = 1


@dataclass(frozen=True)
class Outcome:
    """What to commit for one entry: its decision and, for `OUTPUT`, the label."""

    entry: Entry
    decision: Decision
    label: LabelMessage | None = None


class StreamIO:
    """Consumer-group reads, claims and transactional commits for one `StreamConfig`."""

    def __init__(self, redis: Any, config: StreamConfig) -> None:
        self.redis = redis
        self.config = config
        self._claim_cursor = "0-0"
        self._pending_cursor = "0"
        self.more_to_claim = False
        self._errors_key = f"{config.in_stream}:{config.group}:errors"

    def done_key(self, entry_id: str) -> str:
        return f"{self.config.in_stream}:{self.config.group}:done:{entry_id}"

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; a new group starts at the stream's first entry."""
        from redis.exceptions import ResponseError

        try:
            await self.redis.xgroup_create(self.config.in_stream, self.config.group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def read(self, count: int, block_ms: int | None, pending: bool = False) -> list[Entry]:
        """New entries (XREADGROUP >), or with `pending` this consumer's own unacknowledged ones."""
        reply = await self.redis.xreadgroup(
            self.config.group, self.config.consumer,
            {self.config.in_stream: self._pending_cursor if pending else ">"},
            count=count, block=None if pending else block_ms,
        )
        raw = [(as_text(i), f) for _, entries in reply or () for i, f in entries]
        if pending:
            self._pending_cursor = raw[-1][0] if raw else self._pending_cursor
            return await self._with_deliveries(raw)
        return [Entry(i, f or None) for i, f in raw]

    async def claim(self, count: int) -> list[Entry]:
        """Entries idle past `claim_idle_ms` under any consumer of the group, now this one's."""
        reply = await self.redis.xautoclaim(
            self.config.in_stream, self.config.group, self.config.consumer,
            min_idle_time=self.config.claim_idle_ms, start_id=self._claim_cursor, count=count,
        )
        self._claim_cursor = as_text(reply[0])
        self.more_to_claim = self._claim_cursor != "0-0"
        # Redis 7 lists entries deleted while pending apart (and drops them from the pending list);
        # Redis 6 returns them with no fields. Either way they come back with `fields` None.
        deleted = [(as_text(i), None) for i in (reply[2] if len(reply) > 2 else ())]
        return await self._with_deliveries([(as_text(i), f) for i, f in reply[1]] + deleted)

    async def keep(self, ids: Sequence[str]) -> None:
        """Reset the idle time of entries this consumer holds (XCLAIM JUSTID: the delivery count
        stays): a batch waiting for an engine to come back is neither taken over nor counted
        again while it waits."""
        if ids:
            await self.redis.xclaim(self.config.in_stream, self.config.group, self.config.consumer, 0,
                                    list(ids), justid=True)

    async def _with_deliveries(self, raw: Sequence[tuple[str, dict | None]]) -> list[Entry]:
        if not raw:
            return []
        # One exact XPENDING per entry (pipelined): a range over the batch could hold other entries.
        pipe = self.redis.pipeline(transaction=False)
        for i, _ in raw:
            pipe.xpending_range(self.config.in_stream, self.config.group, min=i, max=i, count=1,
                                consumername=self.config.consumer)
        counts = {as_text(p["message_id"]): int(p["times_delivered"])
                  for reply in await pipe.execute() for p in reply}
        return [Entry(i, f or None, counts.get(i, 1)) for i, f in raw]

    async def pending_count(self) -> int:
        summary = await self.redis.xpending(self.config.in_stream, self.config.group)
        return int(summary["pending"])

    async def record_failures(self, failures: dict[str, str]) -> None:
        """Keep each entry's last error, for the dead letter if another worker gives up on it."""
        if failures:
            await self.redis.hset(self._errors_key, mapping=failures)

    async def last_errors(self, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        values = await self.redis.hmget(self._errors_key, list(ids))
        return {i: as_text(v) for i, v in zip(ids, values) if v is not None}

    async def commit(self, outcomes: Sequence[Outcome]) -> int:
        """Write and acknowledge every non-retry outcome atomically; returns how many were new."""
        from redis.exceptions import WatchError

        final = [o for o in outcomes if o.decision.action is not Action.RETRY]
        if not final:
            return 0
        markers = [self.done_key(o.entry.id) for o in final]
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*markers)
                    already = await pipe.mget(markers)
                    pipe.multi()
                    written = 0
                    for outcome, marker, seen in zip(final, markers, already):
                        if seen is None:
                            self._write(pipe, outcome)
                            pipe.set(marker, outcome.decision.action.value, ex=self.config.done_ttl_s)
                            written += 1
                    ids = [o.entry.id for o in final]
                    pipe.xack(self.config.in_stream, self.config.group, *ids)
                    pipe.hdel(self._errors_key, *ids)
                    await pipe.execute()
                    return written
                except WatchError:
                    continue  # another worker committed one of these meanwhile: look again

    def _write(self, pipe: Any, outcome: Outcome) -> None:
        if outcome.decision.action is Action.OUTPUT:
            pipe.xadd(self.config.out_stream, outcome.label.encode())
            return
        entry = outcome.entry
        letter = DeadLetter(original_payload(entry.fields) if entry.fields else b"", entry.id,
                            outcome.decision.reason, entry.deliveries)
        pipe.xadd(self.config.dead_letter_stream, letter.encode())
