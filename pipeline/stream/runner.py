"""Running a `StreamWorker`: in the foreground until SIGTERM/SIGINT (`dialoguellm serve`), or in a
background thread of the calling process (the demo, the benchmark, tests)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from pipeline.core.signals import until_signal
from pipeline.stream.config import StreamConfig
from pipeline.stream.metrics import WorkerMetrics
from pipeline.stream.worker import LabelPool, StreamWorker, VideoDescribers


async def run_worker(config: StreamConfig, pool: LabelPool, stop: asyncio.Event,
                     metrics: WorkerMetrics | None = None, videos: VideoDescribers | None = None) -> None:
    """Connect to Redis (AUTH and TLS from the URL), label until `stop`, then disconnect."""
    import redis.asyncio

    tcp = {} if config.redis_url.startswith("unix:") else {"socket_keepalive": True}
    client = redis.asyncio.from_url(config.redis_url, health_check_interval=30,
                                    client_name=worker_client_name(config), **tcp)
    try:
        await StreamWorker(client, config, pool, metrics, videos).run(stop)
    finally:
        await client.aclose()


def worker_client_name(config: StreamConfig) -> str:
    """The name the worker's Redis connections carry (CLIENT LIST shows it)."""
    return f"dialoguellm-worker:{config.consumer}"


def serve_until_signal(config: StreamConfig, pool: LabelPool, metrics: WorkerMetrics,
                       videos: VideoDescribers | None = None) -> None:
    """Label until SIGTERM or SIGINT; then stop reading, finish the batches in flight and return."""
    if config.metrics_port is not None:
        metrics.serve(config.metrics_port)
    until_signal(lambda stop: run_worker(config, pool, stop, metrics, videos))


class BackgroundWorker:
    """A worker in a thread of this process: `start()`, then `stop()` finishes in-flight batches."""

    def __init__(self, config: StreamConfig, pool: LabelPool, metrics: WorkerMetrics | None = None,
                 videos: VideoDescribers | None = None) -> None:
        self.config, self.pool, self.videos = config, pool, videos
        self.metrics = metrics or WorkerMetrics()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"worker-{config.consumer}", daemon=True)

    def start(self) -> BackgroundWorker:
        self._thread.start()
        self._ready.wait()
        return self

    def stop(self, timeout: float | None = 600) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    def check(self) -> None:
        """Raise what stopped the worker, if it stopped on its own."""
        if not self._thread.is_alive():
            raise self._error or RuntimeError("the worker stopped")

    def __enter__(self) -> BackgroundWorker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await run_worker(self.config, self.pool, self._stop, self.metrics, self.videos)

        try:
            asyncio.run(main())
        except BaseException as e:  # surfaced to the caller by stop()
            self._error = e
        finally:
            self._ready.set()
