"""A worker's side of the control stream: adapters loaded, made the default and unloaded while it runs.

Every worker reads the whole control stream with XREAD, from its first entry, not as a member of a
consumer group: each worker must apply every message (a group would hand each to one worker), and a
worker started later folds the stream from the start into the current state before it reads a turn
(`Rollout.start`). Messages are idempotent (`RolloutState.apply`), so reading them again is harmless.

Nothing a message names is trusted: a `load` path must resolve, symlinks included, under
`--adapters-root` and be a servable LoRA folder (`workers.adapters.check_rollout_adapter`) before
any engine sees it; a name stands for one set of files for good. A message that is malformed or
refused is logged with its reason in one line, counted, reported, and skipped; it never stops the
worker. Each worker reports what it serves in the hash `CONTROL:workers:CONSUMER`, kept alive by
its heartbeat (`dialoguellm adapters list`).

Turns in flight: a turn gets its adapter when its request is built (`adapter_for`, the canary rule
of `pipeline.core.rollout`); a new adapter is taken only once every engine serves it, and an adapter
is unloaded only once no request in flight uses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from pipeline.core.errors import DialogueLLMError, one_line
from pipeline.core.rollout import RolloutState
from pipeline.core.wire import ControlMessage, MalformedMessage, as_text
from pipeline.stream.config import StreamConfig, worker_report_key
from pipeline.stream.metrics import WorkerMetrics
from pipeline.stream.redis_retry import RedisRetry

log = logging.getLogger("dialoguellm.control")

READ_BLOCK_MS = 1000
REDIS_DEADLINE_S = 30.0  # a Redis call of the control flow unanswered this long is retried
FILES_DEADLINE_S = 60.0  # checking and hashing an adapter folder (a hung network mount)
UNUSED_DEADLINE_S = 600.0  # how long an unload waits for the requests in flight that use the adapter
PAGE = 500


class Rollout:
    """The control state of one worker over its engine pool; `on_change` runs after every change."""

    def __init__(self, redis: Any, config: StreamConfig, pool: Any, metrics: WorkerMetrics,
                 on_change: Callable[[RolloutState], None]) -> None:
        self.redis, self.config, self.pool, self.metrics = redis, config, pool, metrics
        self.on_change = on_change
        self.state = RolloutState()
        self.applied = "0-0"  # the last control entry read
        self.refused = ""  # the last refusal, as one line
        self._uses: Counter[str] = Counter()
        self._retry = RedisRetry(None, config.control_stream, None, metrics.redis_errors.inc, log)
        self._key = worker_report_key(config.control_stream, config.consumer)

    # -- the rule a turn's adapter comes from

    def adapter_for(self, conversation_id: str) -> str | None:
        return self.state.adapter_for(conversation_id)

    @contextmanager
    def using(self, adapters: Iterable[str | None]) -> Iterator[None]:
        """Count requests in flight per adapter while the block runs (an unload waits for none)."""
        names = Counter(a for a in adapters if a is not None)
        self._uses.update(names)
        try:
            yield
        finally:
            self._uses.subtract(names)

    # -- start and follow

    async def start(self, stop: asyncio.Event) -> None:
        """Fold the whole control stream into the state and serve it before any turn is read."""
        from workers.adapters import adapter_digest

        started = {}
        for name, path in self.pool.adapter_paths.items():
            started[name] = (path, await self._files(adapter_digest, path))
        base = RolloutState.started_with(started, self.pool.default_adapter)
        state, last = base, "0-0"
        while not stop.is_set():
            start = "-" if last == "0-0" else f"({last}"
            page = await self._redis(lambda: self.redis.xrange(self.config.control_stream, min=start, count=PAGE),
                                     stop)
            for entry_id, fields in page or ():
                last = as_text(entry_id)
                state = (await self._checked(last, fields, state))[1]
            if not page or len(page) < PAGE:
                break
        try:
            await self.pool.serve(_paths(state), state.default)
        except Exception as e:  # noqa: BLE001 - the engines refused: serve what they served at start
            self._refuse(last, f"engines could not serve the control stream's state: {one_line(e)}")
            state = base
        self.state, self.applied = state, last
        self.on_change(state)
        log.info("control state applied", extra=self._summary())
        await self.report(stop)

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply control messages as they come, and report what this worker serves, until `stop`."""
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        try:
            while not stop.is_set():
                reply = await self._redis(lambda: self.redis.xread({self.config.control_stream: self.applied},
                                                                   count=PAGE, block=READ_BLOCK_MS), stop)
                for _, entries in reply or ():
                    for entry_id, fields in entries:
                        await self._apply(as_text(entry_id), fields)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            try:
                await asyncio.wait_for(self.redis.delete(self._key), 5)  # gone from `adapters list`
            except Exception:  # noqa: BLE001 - it expires on its own
                pass

    async def _apply(self, entry_id: str, fields: Any) -> None:
        """One control message, applied to the engines and the routing, or refused; never raises."""
        try:
            message, state = await self._checked(entry_id, fields, self.state)
            if message is None or state is self.state:
                return
            if message.op == "load":  # taken only once every engine serves it
                await self.pool.serve(_paths(state), state.default)
                self.state = state
            elif message.op == "default":
                self.state = state
                await self.pool.serve(_paths(state), state.default)
            else:  # no new request gets it; the engines drop it once none in flight uses it
                self.state = state
                self.on_change(state)
                await self._unused(message.name)
                await self.pool.serve(_paths(state), state.default)
            self.on_change(self.state)
            log.warning("control message applied", extra={"id": entry_id, "change": message.describe(),
                                                          "by": message.by, **self._summary()})
        except Exception as e:  # noqa: BLE001 - an engine refused the change (e.g. unreadable weights)
            self._refuse(entry_id, f"engines refused it: {one_line(e)}")
        finally:
            self.applied = entry_id
            await self.report()

    async def _checked(self, entry_id: str, fields: Any, state: RolloutState
                       ) -> tuple[ControlMessage | None, RolloutState]:
        """The message and the state after it, checked; a malformed or refused one leaves `state` as it was."""
        from workers.adapters import adapter_digest, check_rollout_adapter

        try:
            message = ControlMessage.parse(fields)
            digest = None
            if message.op == "load":
                info = await self._files(check_rollout_adapter, message.name, message.path,
                                         self.config.adapters_root, self.pool.engine_config.max_lora_rank)
                digest = await self._files(adapter_digest, info.path)
                message = replace(message, path=info.path)
            return message, state.apply(message, digest)
        except (MalformedMessage, DialogueLLMError) as e:
            self._refuse(entry_id, str(e))
            return None, state

    def _refuse(self, entry_id: str, reason: str) -> None:
        self.refused = f"{entry_id}: {reason}"
        self.metrics.control_refused.inc()
        log.warning("control message refused", extra={"id": entry_id, "error": reason})

    async def _unused(self, name: str) -> None:
        deadline = time.monotonic() + UNUSED_DEADLINE_S
        while self._uses[name] > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # -- reports

    def report_fields(self) -> dict[str, Any]:
        state = self.state
        return {
            "consumer": self.config.consumer, "in_stream": self.config.in_stream, "group": self.config.group,
            "model": self.pool.model, "adapters": {n: {"path": p, "digest": d} for n, (p, d) in state.adapters.items()},
            "default": state.default, "canary": state.canary, "share": state.share,
            "merged": bool(getattr(self.pool, "merged", False)), "engines_alive": self.pool.alive,
            "adapters_root": self.config.adapters_root, "max_lora_rank": self.pool.engine_config.max_lora_rank,
            "applied": self.applied, "refused": self.refused, "at": time.time(),
        }

    async def report(self, stop: asyncio.Event | None = None) -> None:
        ttl = max(1, round(3 * self.config.heartbeat_s))
        body = json.dumps(self.report_fields())

        async def write() -> None:
            await self.redis.set(self._key, body, ex=ttl)

        await self._redis(write, stop)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.config.heartbeat_s)
            except asyncio.TimeoutError:
                await self.report(stop)

    def _summary(self) -> dict[str, Any]:
        state = self.state
        return {"adapters": ",".join(state.adapters), "default": state.default, "canary": state.canary,
                "share": state.share}

    # -- deadlines

    async def _redis(self, call: Callable[[], Any], stop: asyncio.Event | None = None) -> Any:
        return await self._retry(lambda: asyncio.wait_for(call(), REDIS_DEADLINE_S), stop)

    async def _files(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), FILES_DEADLINE_S)
        except asyncio.TimeoutError:
            raise DialogueLLMError(f"reading the adapter folder took longer than {FILES_DEADLINE_S:g} s") from None


def _paths(state: RolloutState) -> dict[str, str]:
    return {name: path for name, (path, _) in state.adapters.items()}
