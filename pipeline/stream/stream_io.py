"""The Redis side of the worker: read and claim entries of a consumer group, commit their outcomes.

Committing writes each entry's output (or dead letter) and its XACK in one MULTI/EXEC, guarded
by a per-entry marker key under WATCH: an entry delivered twice (a claim racing a slow worker,
a retry after a lost connection) yields one output entry, whichever worker commits first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.wire import DeadLetter, LabelMessage, as_text, original_payload
from pipeline.stream.ack_policy import Action, Decision
from pipeline.stream.config import StreamConfig
from pipeline.stream.group_reader import Entry, GroupReader


@dataclass(frozen=True)
class Outcome:
    """What to commit for one entry: its decision and, for `OUTPUT`, the label."""

    entry: Entry
    decision: Decision
    label: LabelMessage | None = None


class StreamIO(GroupReader):
    """Consumer-group reads, claims and transactional commits for one `StreamConfig`."""

    def __init__(self, redis: Any, config: StreamConfig) -> None:
        super().__init__(redis, config.in_stream, config.group, config.consumer, config.claim_idle_ms)
        self.config = config
        self._errors_key = f"{config.in_stream}:{config.group}:errors"

    def done_key(self, entry_id: str) -> str:
        return f"{self.config.in_stream}:{self.config.group}:done:{entry_id}"

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
        """Write and acknowledge every non-retry outcome atomically; returns how many were new.

        Under WATCH of the entries' done markers: when another worker commits one of them
        meanwhile, redis-py's `transaction` runs this again and the entry is skipped."""
        final = [o for o in outcomes if o.decision.action is not Action.RETRY]
        if not final:
            return 0
        markers = [self.done_key(o.entry.id) for o in final]

        async def write(pipe: Any) -> int:
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
            return written

        return await self.redis.transaction(write, *markers, value_from_callable=True)

    def _write(self, pipe: Any, outcome: Outcome) -> None:
        if outcome.decision.action is Action.OUTPUT:
            pipe.xadd(self.config.out_stream, outcome.label.encode())
            return
        entry = outcome.entry
        letter = DeadLetter(original_payload(entry.fields) if entry.fields else b"", entry.id,
                            outcome.decision.reason, entry.deliveries)
        pipe.xadd(self.config.dead_letter_stream, letter.encode())
