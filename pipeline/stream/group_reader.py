"""Reading one Redis stream as a member of a consumer group: new entries, this consumer's own
pending ones after a restart, and entries taken over from consumers that stopped (XAUTOCLAIM)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.wire import as_text


@dataclass(frozen=True)
class Entry:
    """An input entry as delivered to this consumer; `fields` is None when it was deleted from the stream."""

    id: str
    fields: dict | None
    deliveries: int = 1


class GroupReader:
    """Reads, claims and keeps entries of `stream` for `consumer` in `group`."""

    def __init__(self, redis: Any, stream: str, group: str, consumer: str, claim_idle_ms: int) -> None:
        self.redis, self.stream, self.group, self.consumer = redis, stream, group, consumer
        self.claim_idle_ms = claim_idle_ms
        self._claim_cursor = "0-0"
        self._pending_cursor = "0"
        self.more_to_claim = False

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; a new group starts at the stream's first entry."""
        from redis.exceptions import ResponseError

        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def read(self, count: int, block_ms: int | None, pending: bool = False) -> list[Entry]:
        """New entries (XREADGROUP >), or with `pending` this consumer's own unacknowledged ones."""
        reply = await self.redis.xreadgroup(
            self.group, self.consumer,
            {self.stream: self._pending_cursor if pending else ">"},
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
            self.stream, self.group, self.consumer,
            min_idle_time=self.claim_idle_ms, start_id=self._claim_cursor, count=count,
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
            await self.redis.xclaim(self.stream, self.group, self.consumer, 0,
                                    list(ids), justid=True)

    async def _with_deliveries(self, raw: Sequence[tuple[str, dict | None]]) -> list[Entry]:
        if not raw:
            return []
        # One exact XPENDING per entry (pipelined): a range over the batch could hold other entries.
        pipe = self.redis.pipeline(transaction=False)
        for i, _ in raw:
            pipe.xpending_range(self.stream, self.group, min=i, max=i, count=1,
                                consumername=self.consumer)
        counts = {as_text(p["message_id"]): int(p["times_delivered"])
                  for reply in await pipe.execute() for p in reply}
        return [Entry(i, f or None, counts.get(i, 1)) for i, f in raw]

    async def pending_count(self) -> int:
        summary = await self.redis.xpending(self.stream, self.group)
        return int(summary["pending"])


Read = Callable[[], Awaitable[list[Entry] | None]]


class ReadOrder:
    """The order every consumer of ours reads in (the stream worker and `alerts` alike): its own
    pending entries first after a restart, until none is left; then, every `claim_interval_ms`,
    entries idle under other consumers (batch after batch while more remain); else new entries."""

    def __init__(self, reader: GroupReader, claim_interval_ms: int) -> None:
        self.reader, self.claim_interval_s = reader, claim_interval_ms / 1000
        self.own_pending = True
        self._next_claim = 0.0

    async def next(self, own: Read, claim: Read, new: Read) -> list[Entry]:
        """The next batch, from whichever of the three reads is due (each may return None)."""
        entries: list[Entry] = []
        if self.own_pending:
            entries = await own() or []
            self.own_pending = bool(entries)
        elif time.monotonic() >= self._next_claim:
            entries = await claim() or []
            wait_s = 0 if self.reader.more_to_claim else self.claim_interval_s
            self._next_claim = time.monotonic() + wait_s
        if not entries and not self.own_pending:
            entries = await new() or []
        return entries
