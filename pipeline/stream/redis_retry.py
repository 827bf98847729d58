"""Redis calls of a long-running consumer, retried: a lost connection or a refused call never
ends the process, and a deleted consumer group is recreated."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class RedisRetry:
    """`await retry(call, stop)`: `call()`, retried with backoff while Redis is unreachable or refuses it.

    Gives up (None) only once `stop` is set, and only for calls given a `stop` (reads: what was
    not read stays in Redis). NOGROUP (the stream or group deleted under the consumer) recreates
    the group with `ensure_group`; other reply errors (WRONGTYPE, OOM, NOPERM) are logged with
    their cause and counted by `count_error`. A reader outside any group (`ensure_group` None)
    only retries.
    """

    def __init__(self, ensure_group: Callable[[], Awaitable[Any]] | None, stream: str, group: str | None,
                 count_error: Callable[[], Any], log: logging.Logger) -> None:
        self.ensure_group, self.stream, self.group = ensure_group, stream, group
        self.count_error, self.log = count_error, log

    async def __call__(self, call: Callable[[], Awaitable[Any]], stop: asyncio.Event | None = None) -> Any:
        from pipeline.stream.redis_checks import describe_error

        delay = 0.05
        while True:
            try:
                return await call()
            except _REDIS_DOWN as e:
                self.count_error()
                self.log.warning("redis unavailable, retrying", extra={"error": f"{type(e).__name__}: {e}",
                                                                       "retry_in_s": delay})
            except ResponseError as e:
                self.count_error()
                if self.ensure_group is not None and str(e).startswith("NOGROUP"):
                    self.log.warning("consumer group missing, recreating it",
                                     extra={"stream": self.stream, "group": self.group})
                    await self(self.ensure_group, stop)
                    continue
                self.log.error("redis refused a call, retrying", extra={
                    "error": describe_error(e, key=self.stream), "retry_in_s": delay})
            if stop is not None and stop.is_set():
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
