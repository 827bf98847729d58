"""`dialoguellm watch`: the live page of the conversations being labelled, for supervisors."""

from __future__ import annotations

from pipeline.cli.preflight import preflight
from pipeline.watch.config import WatchConfig


def run_watch(config: WatchConfig) -> int:
    from pipeline.watch.server import watch_until_signal

    preflight(config)
    watch_until_signal(config, lambda line: print(line, flush=True))
    return 0
