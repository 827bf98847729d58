"""`preflight(args)`: every check that can fail before a command starts work, in one place.

Every command calls it first. It builds the typed configs from the flags the command declared (a
bad value names its field), reads every adapter folder, and checks Redis (credentials, key types)
for commands that use it, so a mistake is one line on stderr before an engine spends a minute
starting, never a traceback after.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from pipeline.cli import configs


@dataclass(frozen=True)
class Checked:
    """The typed configs of a command whose flags passed every check (None: not its concern)."""

    engine: Any = None
    pool: Any = None
    video: Any = None
    stream: Any = None
    alerts: Any = None
    rules: tuple = ()
    watch: Any = None


def preflight(args: argparse.Namespace, redis_keys: tuple[str, ...] = (), **stream_overrides: Any) -> Checked:
    """Build and check the configs `args` holds flags for; `redis_keys` must be streams or absent."""
    from workers.adapters import check_adapter

    engine = pool = video = stream = None
    if hasattr(args, "model"):
        engine = configs.engine_config(args)
        for name, path in engine.adapters.items():
            check_adapter(name, path, engine.max_lora_rank)
    if hasattr(args, "engines") and hasattr(args, "startup_timeout_s"):
        pool = configs.pool_config(args)
    if hasattr(args, "describer"):
        video = configs.video_config(args)
    if hasattr(args, "in_stream"):
        stream = configs.stream_config(args, **stream_overrides)
        redis_keys = (stream.in_stream, stream.out_stream, stream.dead_letter_stream, *redis_keys)
    alerts, rules = None, ()
    if hasattr(args, "rules"):
        from pipeline.alerts.rules import load_rules

        alerts, rules = configs.alerts_config(args), load_rules(args.rules)
        redis_keys = (alerts.labels_stream, alerts.alerts_stream, alerts.dead_letter_stream, *redis_keys)
    watch = None
    if hasattr(args, "text_stream"):  # `watch`: its input-stream flag names only where texts are
        watch = configs.watch_config(args)
        redis_keys = (watch.labels_stream, watch.alerts_stream, *redis_keys)
    url = stream.redis_url if stream else getattr(args, "redis_url", None)
    if redis_keys and url:
        from pipeline.stream.redis_checks import check_streams, connect

        check_streams(connect(url), redis_keys, url)
    return Checked(engine, pool, video, stream, alerts, rules, watch)
