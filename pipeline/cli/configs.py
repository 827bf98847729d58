"""Parsed flags to typed configs: the only place that reads the argparse namespace's fields.

Each builder validates as the dataclass does (a bad value names its field) and leaves out what a
command's parser did not declare, so the config's own default applies.
"""

from __future__ import annotations

import argparse
from typing import Any


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags among `names` this command declared and the user (or its default) set."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def engine_config(args: argparse.Namespace) -> Any:
    """The `EngineConfig`, serving the shipped adapter when it applies."""
    from workers.engine_config import EngineConfig, parse_adapter_specs

    adapters = parse_adapter_specs(getattr(args, "adapters", None))
    return EngineConfig(
        adapters=adapters, default_adapter=next(iter(adapters), None),
        use_default_adapter=getattr(args, "use_default_adapter", True),
        **_given(args, "model", "decoding", "context_turns", "max_model_len", "max_lora_rank", "kv_cache_gib"),
    ).with_default_adapter()


def pool_config(args: argparse.Namespace) -> Any:
    from workers.engine_pool import PoolConfig

    return PoolConfig(**_given(args, "engines", "max_inflight_per_engine", "gpus_per_engine", "cpus_per_engine",
                               "ray_address", "startup_timeout_s"))


def decode_config(args: argparse.Namespace) -> Any:
    from workers.video.decoder import DecodeConfig

    return DecodeConfig(**_given(args, "frames", "mode"))


def video_policy(args: argparse.Namespace) -> Any:
    """The `VideoPolicy`: what may be opened for a turn's video (none of the flags: nothing)."""
    from pipeline.core.video_policy import VideoPolicy

    return VideoPolicy(**_given(args, "video_roots", "video_allow", "video_timeout_s"))


def video_config(args: argparse.Namespace) -> Any:
    """The `VideoPoolConfig`, or None when the describer is `none`."""
    from workers.video.actors import VideoPoolConfig

    policy = video_policy(args)  # checked even when nothing is described: a bad flag fails at start
    if getattr(args, "describer", "none") == "none":
        return None
    return VideoPoolConfig(
        describer=args.describer, actors=getattr(args, "video_actors", None) or 1, decode=decode_config(args),
        options=describer_options(args), ray_address=getattr(args, "ray_address", None),
        startup_timeout_s=getattr(args, "startup_timeout_s", None) or 120.0, policy=policy,
    )


def describer_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"model": args.vlm_model} if getattr(args, "describer", None) == "vlm" else {}


def stream_config(args: argparse.Namespace, **overrides: Any) -> Any:
    """The `StreamConfig` (its context as the engine's, its in-flight limit as the pool's)."""
    from pipeline.stream.config import StreamConfig

    fields = _given(args, "in_stream", "out_stream", "dead_stream", "group", "consumer", "batch_size",
                    "batch_wait_ms", "claim_idle_ms", "claim_interval_ms", "max_deliveries",
                    "max_inflight_per_engine", "max_text_chars", "context_turns", "context_ttl_s", "metrics_port")
    fields.update({"redis_url": args.redis_url, **overrides})
    return StreamConfig(**fields)


ALERTS_FIELDS = ("labels_stream", "alerts_stream", "group", "consumer", "batch_size", "reorder_wait_ms",
                 "claim_idle_ms", "claim_interval_ms", "state_ttl_s")


def alerts_config(args: argparse.Namespace) -> Any:
    from pipeline.alerts.config import AlertsConfig

    return AlertsConfig(**_given(args, "redis_url", *ALERTS_FIELDS))


WATCH_FIELDS = ("labels_stream", "alerts_stream", "host", "port", "token", "show_text", "window_min", "keep_turns")


def watch_config(args: argparse.Namespace) -> Any:
    """The `WatchConfig` (the token from $DIALOGUELLM_WATCH_TOKEN when not given)."""
    import os

    from pipeline.watch.config import TOKEN_ENV, WatchConfig

    given = {name: getattr(args, name) for name in WATCH_FIELDS}
    given["token"] = given["token"] or os.environ.get(TOKEN_ENV) or None
    return WatchConfig(redis_url=args.redis_url, in_stream=args.text_stream, **given)


def label_job(args: argparse.Namespace) -> Any:
    from pipeline.labelling.job import LabelJob

    video = video_config(args)
    policy = video_policy(args)
    return LabelJob(
        manifest=args.manifest, out=args.out, policy=policy, label_set=args.label_set,
        describer=args.describer, decode=decode_config(args), describer_options=describer_options(args),
        cache_dir=args.cache_dir, engines=args.engines, video_actors=video.actors if video else 1,
        batch_size=args.batch_size, rows_per_file=args.rows_per_file, gpus_per_engine=args.gpus_per_engine,
        ray_address=args.ray_address,
    )
