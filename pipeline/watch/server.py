"""The watch page under uvicorn, in a thread of this process: `dialoguellm watch` (until SIGINT or
SIGTERM) and `dialoguellm demo --watch` (while the demo runs) start it the same way."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.watch.config import WatchConfig


class WatchServer:
    """`start()` binds and loads the board, returns the page's address; `stop()` ends it."""

    def __init__(self, config: WatchConfig) -> None:
        import uvicorn

        from pipeline.watch.app import close_streams, create_app

        class Server(uvicorn.Server):
            async def shutdown(self, sockets: Any = None) -> None:
                close_streams(app)  # uvicorn waits for open responses, and event streams never end
                await super().shutdown(sockets)

        self.config = config
        app = create_app(config)
        self.server = Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                            timeout_graceful_shutdown=5))
        self._thread = threading.Thread(target=self.server.run, name="watch-server", daemon=True)

    def start(self) -> str:
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            self._thread.join(0.02)
        if not self.server.started:
            raise ConfigError(f"watch: could not serve on {self.config.host}:{self.config.port} "
                              "(the reason is logged above)")
        return self.url

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{port}/"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join()

    def __enter__(self) -> WatchServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def watch_until_signal(config: WatchConfig, say: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM, saying the address once the page is up."""
    from pipeline.core.signals import until_signal

    async def serve(stop) -> None:
        with WatchServer(config) as server:
            say(f"watch: {server.url}")
            if config.show_raw_text:
                say("watch: texts are shown UNREDACTED (--show-raw-text)")
            await stop.wait()

    until_signal(serve)
