"""`dialoguellm watch`: the live page of the conversations being labelled, for supervisors."""

from __future__ import annotations

import argparse
import os

from pipeline.cli import flags
from pipeline.cli.preflight import preflight
from pipeline.watch.config import TOKEN_ENV, WatchConfig

FIELDS = ("labels_stream", "alerts_stream", "host", "port", "token", "show_text", "window_min", "keep_turns")


def watch_flags(p: argparse.ArgumentParser) -> None:
    flags.redis_flag(p)
    g = p.add_argument_group("page")
    for name in FIELDS:
        options = {"action": "store_true"} if name == "show_text" else {}
        flags.field_flag(g, WatchConfig, name, **options)
    # Not `in_stream`: that dest would make preflight build a worker's StreamConfig.
    flags.field_flag(g, WatchConfig, "in_stream", dest="text_stream")


def watch_config(args: argparse.Namespace) -> WatchConfig:
    """The `WatchConfig` from the flags (the token from $DIALOGUELLM_WATCH_TOKEN when not given)."""
    given = {name: getattr(args, name) for name in FIELDS}
    given["token"] = given["token"] or os.environ.get(TOKEN_ENV) or None
    return WatchConfig(redis_url=args.redis_url, in_stream=args.text_stream, **given)


def run_watch(args: argparse.Namespace) -> int:
    from pipeline.watch.server import serve_until_signal

    config = watch_config(args)
    preflight(args, redis_keys=(config.labels_stream, config.alerts_stream))
    serve_until_signal(config, lambda line: print(line, flush=True))
    return 0
