"""The one way a long-running command stops: SIGTERM or SIGINT sets an event its work watches."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def until_signal(work: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run `work(stop)` on a new event loop; SIGTERM or SIGINT sets `stop`, and `work` decides how
    to finish (the worker commits its batches in flight) before this returns its result."""

    async def main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await work(stop)

    return asyncio.run(main())
