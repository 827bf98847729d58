"""Everything the page reads from Redis: the board kept in step with the labels, alerts and
corrections streams (XRANGE over the window at start, then XREAD), its changes fanned out to the
connected pages, and a conversation's texts from the context store (HGETALL), redacted on the
way out (`pipeline.core.redaction`) unless the config says `show_raw_text`. The one write, a
correction (XADD to the corrections stream), is `pipeline.watch.corrections`'.

Pages subscribe with the cursor they last saw and get, in the same step (nothing can come in
between on the event loop), the conversations changed since and a queue of later changes. A page
that falls `QUEUE_SIZE` changes behind is dropped; its browser reconnects with its last event id
and misses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from pipeline.core.redaction import redactor
from pipeline.core.wire import AlertMessage, CorrectionMessage, LabelMessage, as_text
from pipeline.stream.context_store import context_key
from pipeline.stream.redis_retry import RedisRetry
from pipeline.watch.board import Board, EntryId, detail, format_entry_id, parse_entry_id, summary
from pipeline.watch.config import WatchConfig

log = logging.getLogger("dialoguellm.watch")

READ_COUNT = 1000
BLOCK_MS = 1000  # also how often conversations past the window are dropped
QUEUE_SIZE = 256


@dataclass(frozen=True)
class Change:
    """What a page is sent: `data` is JSON ({"rows": [...], and "drop" or "keep": [ids]})."""

    kind: str  # "sync" (on connect) or "update"
    data: str
    cursor: str


class Feed:
    """A board fed from the streams, and the pages subscribed to its changes."""

    def __init__(self, config: WatchConfig, redis: Any, clock: Callable[[], float] = time.time) -> None:
        self.config, self.redis, self.clock = config, redis, clock
        self.board = Board(config.window_ms, config.keep_turns)
        self.positions: dict[str, str] = {}
        self.subscribers: set[asyncio.Queue[Change | None]] = set()
        self.skipped = 0
        self._retry = RedisRetry(None, config.labels_stream, None, lambda: None, log)
        self._shown = (lambda text: text) if config.show_raw_text else redactor(config.redaction)
        self._shown("+1 415 555 2671")  # loads the phone metadata now, not on a supervisor's first click

    async def load(self) -> None:
        """The window's entries of both streams (XRANGE, in chunks)."""
        start = f"{self._now_ms() - self.config.window_ms}-0"
        for stream in self.streams:
            self.positions[stream], low = start, start
            while entries := await self.redis.xrange(stream, min=low, count=READ_COUNT):
                self._apply(stream, entries)
                self.positions[stream] = as_text(entries[-1][0])
                low = "(" + self.positions[stream]
        self.board.expire(self._now_ms())

    async def run(self) -> None:
        """Follow both streams (XREAD) until cancelled; Redis errors are logged and retried."""
        while True:
            reply = await self._retry(
                lambda: self.redis.xread(self.positions, count=READ_COUNT, block=BLOCK_MS))
            changed: set[str] = set()
            for stream, entries in reply or ():
                stream = as_text(stream)
                changed |= self._apply(stream, entries)
                self.positions[stream] = as_text(entries[-1][0])
            dropped = self.board.expire(self._now_ms())
            if changed or dropped:
                self._publish(changed - set(dropped), dropped)

    @property
    def streams(self) -> tuple[str, ...]:
        return (self.config.labels_stream, self.config.alerts_stream, self.config.corrections_stream)

    def subscribe(self, since: EntryId | None) -> tuple[Change, asyncio.Queue[Change | None]]:
        """The conversations changed at or after `since` (None: all) and the queue of later changes."""
        queue: asyncio.Queue[Change | None] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(queue)
        shown = self.board.shown()
        rows = shown if since is None else self.board.changed_since(since)
        data = _json({"rows": [summary(c) for c in rows], "keep": [c.conversation_id for c in shown]})
        return Change("sync", data, format_entry_id(self.board.cursor)), queue

    def unsubscribe(self, queue: asyncio.Queue[Change | None]) -> None:
        self.subscribers.discard(queue)

    def close(self) -> None:
        """End every subscription (the server is stopping)."""
        for queue in list(self.subscribers):
            self._end(queue)

    async def detail(self, conversation_id: str) -> dict[str, Any] | None:
        """A listed conversation's turns, with their texts when `show_text` (redacted unless
        `show_raw_text`); None when not listed."""
        conv = self.board.conversations.get(conversation_id)
        if conv is None or not conv.turns:
            return None
        texts = None
        if self.config.show_text:
            stored = await self.redis.hgetall(context_key(self.config.in_stream, conversation_id))
            # Off the event loop: redacting a conversation full of numbers takes a fraction of a second.
            texts = await asyncio.to_thread(self._texts, stored)
        return detail(conv, texts)

    def _texts(self, stored: dict) -> dict[int, dict[str, Any]]:
        texts = {}
        for k, v in stored.items():
            turn = msgpack.unpackb(v, raw=False)
            text = turn.get("text")
            texts[int(k)] = {**turn, "text": self._shown(text) if isinstance(text, str) else text}
        return texts

    def _apply(self, stream: str, entries: list) -> set[str]:
        is_labels = stream == self.config.labels_stream
        is_correction = stream == self.config.corrections_stream
        changed = set()
        for raw_id, fields in entries:
            entry_id = parse_entry_id(as_text(raw_id))
            try:
                if is_labels:
                    changed.add(self.board.add_label(entry_id, LabelMessage.decode(fields)))
                elif is_correction:
                    changed.add(self.board.add_correction(entry_id, CorrectionMessage.decode(fields)))
                else:
                    changed.add(self.board.add_alert(entry_id, AlertMessage.decode(fields)))
            except (ValueError, TypeError, AttributeError) as e:  # not ours to fix: shown as a count in the log
                self.skipped += 1
                log.warning("skipped malformed entry %s in %s: %s", as_text(raw_id), stream, e)
        return changed

    def _publish(self, changed: set[str], dropped: list[str]) -> None:
        convs = (self.board.conversations.get(cid) for cid in sorted(changed))
        rows = [summary(c) for c in convs if c is not None and c.turns]
        change = Change("update", _json({"rows": rows, "drop": dropped}), format_entry_id(self.board.cursor))
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                self._end(queue)

    def _end(self, queue: asyncio.Queue[Change | None]) -> None:
        self.subscribers.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
