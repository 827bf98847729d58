"""`dialoguellm watch`: the live page of the conversations being labelled, for supervisors."""

from __future__ import annotations

import argparse

from pipeline.cli import flags
from pipeline.cli.configs import WATCH_FIELDS
from pipeline.cli.preflight import preflight
from pipeline.watch.config import WatchConfig


def watch_flags(p: argparse.ArgumentParser) -> None:
    flags.redis_flag(p)
    g = p.add_argument_group("page")
    for name in WATCH_FIELDS:
        options = {"action": "store_true"} if name == "show_text" else {}
        flags.field_flag(g, WatchConfig, name, **options)
    # Not `in_stream`: that dest would make preflight build a worker's StreamConfig.
    flags.field_flag(g, WatchConfig, "in_stream", dest="text_stream")


def run_watch(args: argparse.Namespace) -> int:
    from pipeline.watch.server import serve_until_signal

    serve_until_signal(preflight(args).watch, lambda line: print(line, flush=True))
    return 0
