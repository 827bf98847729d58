"""`StreamWorker`: the loop that reads turns from a Redis stream and writes their emotion labels.

One reader gathers micro-batches (`batch_size` entries, or whatever came within `batch_wait_ms`
of the first), only while the engine pool has a free slot (backpressure), and hands each to a
task that builds context, labels on the pool and commits. Every `claim_interval_ms` it takes
over entries idle past `claim_idle_ms` (a consumer that died). Redis errors are retried with
backoff: an entry is acknowledged only together with its output, so none is lost or doubled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from pipeline.core.description_cache import RedisDescriptionCache, cache_key
from pipeline.core.descriptions import DescribeResult
from pipeline.core.errors import DialogueLLMError, one_line
from pipeline.core.predictions import LabelRequest, Prediction
from pipeline.core.turns import VideoSegment
from pipeline.core.video_policy import VideoPolicy
from pipeline.core.wire import (
    FLAG_CONTEXT_ONLY,
    FLAG_NO_DESCRIPTION,
    FLAG_PARTIAL_CONTEXT,
    LabelMessage,
    MalformedMessage,
    TurnMessage,
    TurnSchema,
    entry_time_ms,
)
from pipeline.stream.ack_policy import OUTPUT, AckPolicy, Action
from pipeline.stream.config import StreamConfig
from pipeline.stream.context_store import ContextStore
from pipeline.stream.control import Rollout
from pipeline.stream.group_reader import ReadOrder
from pipeline.stream.metrics import WorkerMetrics
from pipeline.stream.redis_retry import RedisRetry
from pipeline.stream.stream_io import Entry, Outcome, StreamIO

log = logging.getLogger("dialoguellm.stream")
DELETED_ENTRY = "entry deleted before it was labelled"

_IDLE_BLOCK_MS = 1000  # how long an idle reader blocks: bounds how fast it notices a stop


class EngineFailure(str):
    """Why the engine failed on a turn (the turn itself may be fine: it is retried)."""


class LabelPool(Protocol):
    """What the worker needs of an engine pool (see `workers.engine_pool.EnginePool`)."""

    model: str
    context_turns: int
    capacity: int
    prompt_tokens: int  # since start: all, and those the engines' prefix caches served
    cached_tokens: int
    queue_depth: int
    alive: int
    accepted_adapters: list[str]
    default_adapter: str | None
    adapter_paths: dict[str, str]  # every adapter served, and its folder
    engine_config: Any  # `workers.engine_config.EngineConfig`: max_lora_rank

    async def label(self, requests: Sequence[LabelRequest]) -> list[Prediction | DialogueLLMError]: ...

    async def serve(self, adapters: dict[str, str], default: str | None) -> None: ...

    def abandon_waiting(self) -> None: ...


class VideoDescribers(Protocol):
    """What the worker needs of a video pool (see `workers.video.actors.VideoPool`)."""

    describer: str
    version: str
    policy: VideoPolicy  # what may be opened: checked here before any actor is asked, and again there

    def deadline_s(self, segments: int) -> float: ...

    async def describe(self, segments: Sequence[VideoSegment]) -> list[DescribeResult]: ...


class StreamWorker:
    """Consumes `config.in_stream` as `config.consumer` of `config.group` until `stop` is set.

    With `videos`, a turn that has a `video` and no `description` is described first (through
    the description cache in Redis); a video that cannot be described leaves the turn labelled
    from its text, flagged `no_description`: a URI the video policy refuses (never opened, not
    even sent to an actor), a broken video, a crashed describer, or describing that overran the
    batch's deadline (`videos.deadline_s`).

    With `config.label_speakers`, a turn of a speaker it does not find is context only: stored in
    the context store (later turns' prompts show it), never sent to the engine, its video never
    described, and answered with a `context_only` entry without label or probabilities.
    """

    def __init__(self, redis: Any, config: StreamConfig, pool: LabelPool, metrics: WorkerMetrics | None = None,
                 videos: VideoDescribers | None = None) -> None:
        self.config = config
        self.pool = pool
        self.videos = videos
        self.descriptions = RedisDescriptionCache(redis)
        self.io = StreamIO(redis, config)
        # The engine's prompts decide how many turns of context a turn needs (one setting, the
        # engine's); the store keeps at least those, so the whole window the prompt can show is there.
        self.context = ContextStore(redis, config.in_stream, pool.context_turns,
                                    max(config.context_keep, pool.context_turns), config.context_ttl_s)
        self.policy = AckPolicy(config.max_deliveries)
        self.speakers = config.speakers
        self.schema = TurnSchema(config.max_text_chars, pool.accepted_adapters)
        self.metrics = metrics or WorkerMetrics()
        # What the control stream asks this worker to serve, and which adapter a turn naming none gets.
        self.rollout = Rollout(redis, config, pool, self.metrics, self._served)
        # Entries labelled before a recreated group keep their done markers: none is written twice.
        self._redis = RedisRetry(self.io.ensure_group, config.in_stream, config.group,
                                 self.metrics.redis_errors.inc, log)
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._tokens_seen = (pool.prompt_tokens, pool.cached_tokens)

    async def run(self, stop: asyncio.Event) -> None:
        """Label until `stop` is set, then finish and commit the batches in flight."""
        await self._redis(self.io.ensure_group, stop)
        await self.rollout.start(stop)  # the control stream's current state, before any turn
        control = asyncio.create_task(self.rollout.follow(stop))
        try:
            await self._run(stop)
        finally:
            control.cancel()
            await asyncio.gather(control, return_exceptions=True)

    def _served(self, state) -> None:
        """A turn may name any adapter served now (and `base`)."""
        from workers.adapters import BASE_MODEL

        self.schema = TurnSchema(self.config.max_text_chars, [*state.adapters, BASE_MODEL])

    async def _run(self, stop: asyncio.Event) -> None:
        slots = asyncio.Semaphore(self.pool.capacity)
        order = ReadOrder(self.io, self.config.claim_interval_ms)
        size = self.config.batch_size
        log.info("worker started", extra={"stream": self.config.in_stream, "group": self.config.group,
                                          "consumer": self.config.consumer, "model": self.pool.model})
        while not stop.is_set():
            if not await _acquire(slots, stop):
                break
            entries: list[Entry] = []
            try:
                entries = await order.next(lambda: self._redis(lambda: self.io.read(size, None, pending=True), stop),
                                           lambda: self._claim(stop), lambda: self._gather(stop))
            finally:
                if entries:
                    self._start(entries, slots)
                else:
                    slots.release()
        if self._tasks:
            log.info("stopping: finishing batches in flight", extra={"batches": len(self._tasks)})
            # Batches still waiting for an engine to come back are let go, unacknowledged: they
            # stay pending for this consumer's next start or another worker's claim.
            self.pool.abandon_waiting()
            await asyncio.gather(*self._tasks)
        log.info("worker stopped", extra={"consumer": self.config.consumer})

    async def _gather(self, stop: asyncio.Event) -> list[Entry]:
        """One micro-batch: block for a first entry, then top up until full or the wait is over."""
        size = self.config.batch_size
        entries = await self._redis(lambda: self.io.read(size, _IDLE_BLOCK_MS), stop) or []
        deadline = time.monotonic() + self.config.batch_wait_ms / 1000
        while entries and len(entries) < size and not stop.is_set():
            wait_ms = int((deadline - time.monotonic()) * 1000)
            if wait_ms <= 0:
                break
            more = await self._redis(lambda: self.io.read(size - len(entries), wait_ms), stop)
            if not more:
                break
            entries += more
        return entries

    async def _claim(self, stop: asyncio.Event) -> list[Entry]:
        in_hand = list(self._inflight)
        await self._redis(lambda: self.io.keep(in_hand), stop)
        entries = await self._redis(lambda: self.io.claim(self.config.batch_size), stop) or []
        # Entries that became ours between the two calls are in hand, not abandoned.
        entries = [e for e in entries if e.id not in self._inflight]
        pending = await self._redis(self.io.pending_count, stop)
        if pending is not None:
            self.metrics.pending.set(pending)
        if entries:
            self.metrics.claimed.inc(len(entries))
            log.info("claimed idle entries", extra={"count": len(entries), "first": entries[0].id})
        return entries

    def _start(self, entries: list[Entry], slots: asyncio.Semaphore) -> None:
        self._inflight.update(e.id for e in entries)
        task = asyncio.create_task(self._process(entries))
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            self._inflight.difference_update(e.id for e in entries)
            slots.release()
            if not t.cancelled() and t.exception() is not None:
                log.error("batch task failed", exc_info=t.exception())

        task.add_done_callback(done)

    async def _process(self, entries: list[Entry]) -> None:
        """Label one micro-batch and commit every entry's outcome."""
        self.metrics.batch_size.observe(len(entries))
        outcomes: list[Outcome] = []
        todo: list[tuple[Entry, TurnMessage]] = []
        over = [e for e in entries if e.deliveries > self.config.max_deliveries]
        last_errors = await self._redis(lambda: self.io.last_errors([e.id for e in over])) if over else {}
        for entry in entries:
            decision = self.policy.claimed(entry.deliveries, last_errors.get(entry.id))
            if decision is None:
                try:
                    todo.append((entry, self._parse(entry)))
                    continue
                except MalformedMessage as e:
                    decision = self.policy.rejected(str(e))
            outcomes.append(Outcome(entry, decision))
        if todo:
            outcomes += await self._label(todo)
        await self._commit(outcomes)

    def _parse(self, entry: Entry) -> TurnMessage:
        """The entry's turn; `MalformedMessage` for a bad one or one deleted before it was labelled."""
        if entry.fields is None:
            raise MalformedMessage(DELETED_ENTRY)
        return self.schema.parse(entry.fields)

    async def _describe(self, todo: list[tuple[Entry, TurnMessage]]) -> list[tuple[Entry, TurnMessage]]:
        """Fill in the description of every turn whose video the policy allows and can be described."""
        wanted = [i for i, (_, m) in enumerate(todo) if m.video is not None and m.description is None]
        if self.videos is None or not wanted:
            return todo
        # Nothing a message names is trusted: the policy decides before any actor or cache sees it.
        allowed: list[int] = []
        segments: list[VideoSegment] = []
        for i in wanted:
            video = todo[i][1].video
            source = self.videos.policy.decide(video.uri)
            if source.allowed:
                allowed.append(i)
                segments.append(replace(video, uri=source.path or source.url))
            else:
                self.metrics.videos_refused.labels(source.refused).inc()
                self._not_described(todo[i][0], source.reason)
        if not allowed:
            return todo
        keys = [cache_key(s, self.videos.describer, self.videos.version) for s in segments]
        known = await self._redis(lambda: self.descriptions.get_many(keys))
        # One description per distinct segment, even when several turns of the batch share it.
        missing = list({keys[j]: j for j, d in enumerate(known) if d is None}.values())
        deadline = self.videos.deadline_s(len(missing))
        try:
            results = await asyncio.wait_for(self.videos.describe([segments[j] for j in missing]), deadline)
            fresh = {keys[j]: r.description for j, r in zip(missing, results, strict=True) if r.description is not None}
            errors = {keys[j]: r.error for j, r in zip(missing, results, strict=True) if r.description is None}
        except asyncio.TimeoutError:  # labelled without descriptions; hung actors are replaced by the pool
            self.metrics.video_timeouts.inc()
            reason = f"describing the batch's {len(missing)} video(s) took longer than its {deadline:g} s deadline"
            fresh, errors = {}, {keys[j]: reason for j in missing}
        except Exception as e:  # a crashed video actor: the turns are labelled from their text alone
            reason = f"describer failed: {one_line(e)}"
            fresh, errors = {}, {keys[j]: reason for j in missing}
        for j, key in enumerate(keys):
            known[j] = known[j] or fresh.get(key)
            if key in errors:
                self._not_described(todo[allowed[j]][0], errors[key])
        self.metrics.videos_described.inc(len(fresh))
        await self._redis(lambda: self.descriptions.put_many(fresh))
        todo = list(todo)
        for i, description in zip(allowed, known, strict=True):
            if description is not None:
                entry, message = todo[i]
                todo[i] = (entry, replace(message, description=description.text))
        return todo

    def _not_described(self, entry: Entry, reason: str) -> None:
        self.metrics.video_errors.inc()
        log.warning("video not described", extra={"source_id": entry.id, "error": reason})

    async def _label(self, todo: list[tuple[Entry, TurnMessage]]) -> list[Outcome]:
        # The speaker policy decides first: a context-only turn's video is never described.
        position = {entry.id: i for i, (entry, _) in enumerate(todo)}
        kept = [(e, m) for e, m in todo if not self.speakers.labels(m.speaker)]
        todo = await self._describe([(e, m) for e, m in todo if self.speakers.labels(m.speaker)])
        # Every turn is context, labelled or not: all are stored before any context is read, so
        # turns of one conversation in the same batch see each other.
        await self._redis(lambda: self.context.remember([m for _, m in todo + kept]))
        outcomes = [Outcome(entry, OUTPUT, self._context_only(entry, message)) for entry, message in kept]
        if not todo:
            return outcomes
        messages = [m for _, m in todo]
        contexts = await self._redis(lambda: self.context.contexts(messages))
        # A turn naming no adapter gets the rollout's choice for its conversation (the canary rule).
        rollout = self.rollout
        requests = [LabelRequest(m.to_turn(), context, m.label_set,
                                 m.adapter if m.adapter is not None else rollout.adapter_for(m.conversation_id))
                    for m, (context, _) in zip(messages, contexts, strict=True)]
        self.metrics.queue_depth.set(self.pool.queue_depth + 1)
        try:
            with rollout.using(r.adapter for r in requests):
                answers = await self._answers(requests)
        finally:
            self.metrics.queue_depth.set(self.pool.queue_depth)
            self.metrics.engines_alive.set(self.pool.alive)
            seen = (self.pool.prompt_tokens, self.pool.cached_tokens)
            self.metrics.count_prompt_tokens(seen[0] - self._tokens_seen[0], seen[1] - self._tokens_seen[1])
            self._tokens_seen = seen
        failures = {entry.id: a for (entry, _), a in zip(todo, answers, strict=True) if isinstance(a, EngineFailure)}
        if failures:
            log.warning("turns failed", extra={"entries": len(failures), "error": next(iter(failures.values()))})
            await self._redis(lambda: self.io.record_failures(dict(failures)))
        for (entry, message), (_, complete), answer in zip(todo, contexts, answers, strict=True):
            if isinstance(answer, EngineFailure):  # may pass: retried until max_deliveries
                outcomes.append(Outcome(entry, self.policy.failed(answer, entry.deliveries)))
                continue
            if isinstance(answer, DialogueLLMError):
                outcomes.append(Outcome(entry, self.policy.rejected(str(answer))))
                continue
            flags = [] if complete else [FLAG_PARTIAL_CONTEXT]
            if message.video is not None and message.description is None:
                flags.append(FLAG_NO_DESCRIPTION)
            label = LabelMessage(
                message.conversation_id, message.turn_id, answer.label, answer.confidence, answer.probs,
                answer.adapter, self.pool.model, entry.id, 0.0, message.description, flags, message.speaker,
                message.label_set,
            )
            outcomes.append(Outcome(entry, OUTPUT, label))
        return sorted(outcomes, key=lambda o: position[o.entry.id])  # written in the order read

    def _context_only(self, entry: Entry, message: TurnMessage) -> LabelMessage:
        """The output of a turn the speaker policy leaves unlabelled: no label, confidence or probabilities."""
        return LabelMessage(message.conversation_id, message.turn_id, None, None, {}, None, self.pool.model,
                            entry.id, 0.0, message.description, [FLAG_CONTEXT_ONLY], message.speaker,
                            message.label_set)

    async def _answers(self, requests: list[LabelRequest]) -> list[Prediction | DialogueLLMError | EngineFailure]:
        """The pool's answers; a batch the engine fails is halved and retried at once, so one turn
        that makes the engine fail (a poison turn) fails alone and the rest are labelled."""
        try:
            return await self.pool.label(requests)
        except Exception as e:  # an engine or actor failure
            failure = EngineFailure(f"engine failed: {one_line(e)}")
            # Not split when there is no engine to run on, an engine hung (restarted), a call killed
            # every engine, or the failure took the last live engine out of rotation (its health is
            # being checked: the failure may have broken it): so a turn that breaks engines is
            # retried a delivery at a time, never breaking engine after engine within one.
            if len(requests) == 1 or isinstance(e, DialogueLLMError) or self.pool.alive == 0:
                return [failure] * len(requests)
        half = len(requests) // 2
        return await self._answers(requests[:half]) + await self._answers(requests[half:])

    async def _commit(self, outcomes: list[Outcome]) -> None:
        now_ms = time.time() * 1000
        stamped = [
            Outcome(o.entry, o.decision, _with_latency(o.label, now_ms)) if o.label else o for o in outcomes
        ]
        await self._redis(lambda: self.io.commit(stamped))
        for o in stamped:
            if o.decision.action is Action.OUTPUT and o.label.context_only:
                self.metrics.context_only.inc()
            elif o.decision.action is Action.OUTPUT:
                self.metrics.labelled.inc()
                self.metrics.turns_by_adapter.labels(o.label.adapter or "base").inc()
                self.metrics.latency.observe(o.label.latency_ms / 1000)
            elif o.decision.action is Action.DEAD_LETTER:
                self.metrics.dead_lettered.inc()
                log.warning("dead-lettered", extra={"source_id": o.entry.id, "error": o.decision.reason,
                                                    "deliveries": o.entry.deliveries})
            else:
                self.metrics.retried.inc()


def _with_latency(label: LabelMessage, now_ms: float) -> LabelMessage:
    return replace(label, latency_ms=round(now_ms - entry_time_ms(label.source_id), 1))


async def _acquire(slots: asyncio.Semaphore, stop: asyncio.Event) -> bool:
    """Wait for a free engine slot; False when `stop` is set first."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(slots.acquire(), timeout=0.2)
            return True
        except asyncio.TimeoutError:
            continue
    return False
