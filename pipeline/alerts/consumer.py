"""`AlertsConsumer`: reads the labels stream in its own consumer group and writes escalation alerts.

Exactly once: for a batch of labels, the alerts they raise, the conversations' new states and the
XACK of the label entries are written in one MULTI/EXEC, under WATCH of those states. A consumer
killed before EXEC leaves its labels pending (read again at its restart, or claimed by another
consumer) and the states as they were; a consumer racing another on the same conversation
retries on the state the other wrote, where the label is already applied (or held) and raises
nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.alerts.config import AlertsConfig
from pipeline.alerts.episodes import ConversationState, LabelView, apply, label_view
from pipeline.alerts.rules import Rule
from pipeline.core.wire import AlertMessage, DeadLetter, LabelMessage, original_payload
from pipeline.stream.group_reader import Entry, GroupReader, ReadOrder
from pipeline.stream.redis_retry import RedisRetry

log = logging.getLogger("dialoguellm.alerts")
DELETED_ENTRY = "label entry deleted before it was evaluated"
_IDLE_BLOCK_MS = 500  # bounds how late a held label is released and how fast a stop is noticed


@dataclass
class AlertsCounts:
    """What the consumer did since it started (logged when it stops)."""

    labels: int = 0
    context_only: int = 0  # labels entries of turns the worker did not label (acknowledged, never scored)
    opened: int = 0
    closed: int = 0
    late: int = 0
    dead_lettered: int = 0
    redis_errors: int = 0

    def redis_error(self) -> None:
        self.redis_errors += 1


class AlertsConsumer:
    """Evaluates `rules` over the labels of every conversation until stopped."""

    def __init__(self, redis: Any, config: AlertsConfig, rules: Sequence[Rule]) -> None:
        self.redis, self.config, self.rules = redis, config, tuple(rules)
        self.reader = GroupReader(redis, config.labels_stream, config.group, config.consumer, config.claim_idle_ms)
        self.counts = AlertsCounts()
        self._redis = RedisRetry(self.reader.ensure_group, config.labels_stream, config.group,
                                 self.counts.redis_error, log)
        self._held_index = f"{config.key_prefix}:held"

    def state_key(self, conversation_id: str) -> str:
        return f"{self.config.key_prefix}:state:{conversation_id}"

    async def run(self, stop: asyncio.Event) -> None:
        """Read, evaluate and commit until `stop` is set (the batch in hand is committed first)."""
        await self._redis(self.reader.ensure_group, stop)
        log.info("alerts started", extra={"stream": self.config.labels_stream, "group": self.config.group,
                                          "consumer": self.config.consumer, "rules": [r.name for r in self.rules]})
        order = ReadOrder(self.reader, self.config.claim_interval_ms)
        size = self.config.batch_size
        while not stop.is_set():
            entries = await order.next(lambda: self._redis(lambda: self.reader.read(size, None, pending=True), stop),
                                       lambda: self._redis(lambda: self.reader.claim(size), stop),
                                       lambda: self._redis(lambda: self.reader.read(size, _IDLE_BLOCK_MS), stop))
            if entries:
                await self._redis(lambda: self.commit(entries))
            await self._redis(self.release_due)
        log.info("alerts stopped", extra=vars(self.counts))

    async def commit(self, entries: Sequence[Entry]) -> None:
        """Apply a batch of label entries and acknowledge them, atomically."""
        by_conversation: dict[str, list[LabelView]] = defaultdict(list)
        dead: list[DeadLetter] = []
        for entry in entries:
            if entry.fields is None:
                dead.append(DeadLetter(b"", entry.id, DELETED_ENTRY, entry.deliveries))
                continue
            try:
                message = LabelMessage.decode(entry.fields)
                view = label_view(message, entry.id)
            except Exception as e:  # any undecodable entry: set aside with its reason, never a crash
                dead.append(DeadLetter(original_payload(entry.fields), entry.id,
                                       f"not a label: {type(e).__name__}: {e}", entry.deliveries))
                continue
            by_conversation[message.conversation_id].append(view)
        await self._transaction(by_conversation, [e.id for e in entries], dead)
        self.counts.labels += sum(len(v) for v in by_conversation.values())
        self.counts.context_only += sum(v.context_only for views in by_conversation.values() for v in views)
        self.counts.dead_lettered += len(dead)
        for letter in dead:
            log.warning("label entry set aside", extra={"id": letter.source_id, "error": letter.error})

    async def release_due(self) -> None:
        """Apply held labels whose wait for the turn before them is over."""
        now_ms = await self._server_ms()
        due = await self.redis.zrangebyscore(self._held_index, "-inf", now_ms, start=0,
                                             num=self.config.batch_size)
        if due:
            await self._transaction({_text(c): [] for c in due}, [], [])

    async def _transaction(self, by_conversation: dict[str, list[LabelView]], ack_ids: list[str],
                           dead: list[DeadLetter]) -> None:
        conversations = list(by_conversation)
        keys = [self.state_key(c) for c in conversations]

        async def evaluate(pipe: Any) -> tuple[list[AlertMessage], int]:
            # Run again by redis-py's `transaction` when another consumer changed one of these states.
            stored = await pipe.mget(keys) if keys else []
            now_ms = await self._server_ms()
            pipe.multi()
            alerts: list[AlertMessage] = []
            late = 0
            for conversation, key, raw in zip(conversations, keys, stored, strict=True):
                state = ConversationState.from_bytes(raw)
                late_before = state.late
                alerts += self._evaluate(pipe, conversation, key, state, by_conversation[conversation], now_ms)
                late += state.late - late_before
            for alert in alerts:
                pipe.xadd(self.config.alerts_stream, alert.encode())
            for letter in dead:
                pipe.xadd(self.config.dead_letter_stream, letter.encode())
            if ack_ids:
                pipe.xack(self.config.labels_stream, self.config.group, *ack_ids)
            return alerts, late

        alerts, late = await self.redis.transaction(evaluate, *keys, value_from_callable=True)
        self.counts.late += late
        for alert in alerts:
            self.counts.closed += alert.closed
            self.counts.opened += not alert.closed
            log.info("alert closed" if alert.closed else "alert opened", extra={
                "conversation_id": alert.conversation_id, "rule": alert.rule, "turn_ids": alert.turn_ids,
                "score": alert.score})

    def _evaluate(self, pipe: Any, conversation: str, key: str, state: ConversationState,
                  labels: list[LabelView], now_ms: int) -> list[AlertMessage]:
        """Queue the state's update on `pipe`; returns the alerts to write with it."""
        for label in labels:
            state.admit(label, now_ms)
        alerts = apply(state, conversation, state.release(now_ms, self.config.reorder_wait_ms), self.rules)
        pipe.set(key, state.to_bytes(), ex=self.config.state_ttl_s)
        release_at = state.earliest_release_ms(self.config.reorder_wait_ms)
        if release_at is None:
            pipe.zrem(self._held_index, conversation)
        else:
            pipe.zadd(self._held_index, {conversation: release_at})
        return alerts

    async def _server_ms(self) -> int:
        """Redis's clock, the one label entry ids are stamped with (consumers' clocks may differ)."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def run_alerts(config: AlertsConfig, rules: Sequence[Rule], stop: asyncio.Event) -> AlertsCounts:
    """Connect to Redis, evaluate until `stop`, disconnect; returns what was done."""
    import redis.asyncio

    client = redis.asyncio.from_url(config.redis_url, health_check_interval=30,
                                    client_name=f"dialoguellm-alerts:{config.consumer}")
    try:
        consumer = AlertsConsumer(client, config, rules)
        await consumer.run(stop)
        return consumer.counts
    finally:
        await client.aclose()


def alerts_until_signal(config: AlertsConfig, rules: Sequence[Rule]) -> AlertsCounts:
    """`dialoguellm alerts`: evaluate until SIGTERM or SIGINT, then commit the batch in hand and return."""
    from pipeline.core.signals import until_signal

    return until_signal(lambda stop: run_alerts(config, rules, stop))
