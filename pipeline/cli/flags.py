"""The flag groups commands share, each flag's default and help taken from its config field.

One source of defaults, as vLLM's `EngineArgs.add_cli_args`: a flag is declared here once, against
the dataclass field it fills (`EngineConfig.max_model_len` -> `--max-model-len`), and reads its
default, type and help from that field. `pipeline.cli.configs` turns the parsed flags back into
the typed configs; the argparse namespace goes no further.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from pipeline.core.video_policy import VideoPolicy
from pipeline.stream.config import StreamConfig
from workers.engine_config import DECODING_MODES, EngineConfig
from workers.engine_pool import PoolConfig
from workers.video.actors import VideoPoolConfig
from workers.video.decoder import DecodeConfig
from workers.video.modes import MODES

DESCRIBERS = ("cpu", "vlm", "none")
DEFAULT_VLM = "Qwen/Qwen2.5-VL-7B-Instruct"
_TYPES = {"int": int, "float": float, "str": str}


def field_flag(group: Any, cls: type, name: str, flag: str | None = None, **overrides: Any) -> None:
    """Declare `flag` (default `--field-name`) for `cls.name`: default, type and help from the field."""
    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    default = f.default if f.default is not dataclasses.MISSING else None
    kind = _TYPES.get(str(f.type).split(" |")[0])
    text = f.metadata.get("help", "")
    if default is not None and "default:" not in text:
        text += " (default: %(default)s)"
    flag = flag or "--" + name.replace("_", "-")
    options: dict[str, Any] = dict(dest=name, default=default, help=text)
    if kind is not None:
        options.update(type=kind, metavar=flag.lstrip("-").replace("-", "_").upper())
    options.update(overrides)
    group.add_argument(flag, **options)


def model_flags(p: argparse.ArgumentParser) -> None:
    """The model and engine: every command that runs the model."""
    g = p.add_argument_group("model")
    field_flag(g, EngineConfig, "model")
    field_flag(g, EngineConfig, "adapters", "--adapter", action="append", metavar="NAME=PATH", type=str)
    g.add_argument("--no-adapter", dest="use_default_adapter", action="store_false",
                   help="serve the bare model, not the shipped adapter")
    field_flag(g, EngineConfig, "decoding", choices=DECODING_MODES)
    field_flag(g, EngineConfig, "context_turns", "--context", metavar="Z")
    field_flag(g, EngineConfig, "max_model_len")
    field_flag(g, EngineConfig, "max_lora_rank")
    field_flag(g, EngineConfig, "kv_cache_gib")


def pool_flags(p: argparse.ArgumentParser) -> None:
    """The engine and video actors in Ray."""
    g = p.add_argument_group("pool")
    field_flag(g, PoolConfig, "engines")
    field_flag(g, PoolConfig, "max_inflight_per_engine", "--max-inflight")
    field_flag(g, PoolConfig, "gpus_per_engine")
    field_flag(g, PoolConfig, "cpus_per_engine")
    field_flag(g, PoolConfig, "ray_address")
    field_flag(g, PoolConfig, "startup_timeout_s")
    field_flag(g, VideoPoolConfig, "actors", "--video-actors", dest="video_actors")


def video_flags(p: argparse.ArgumentParser) -> None:
    """How a turn's video becomes words."""
    g = p.add_argument_group("video")
    field_flag(g, VideoPoolConfig, "describer", choices=DESCRIBERS)
    field_flag(g, DecodeConfig, "frames")
    field_flag(g, DecodeConfig, "mode", "--sampling", choices=MODES)
    g.add_argument("--vlm-model", default=DEFAULT_VLM, help="the vlm describer's model (default: %(default)s)")
    # What a worker may open for a turn's video (VideoPolicy): by default, nothing.
    field_flag(g, VideoPolicy, "video_roots", "--video-root", action="append", default=None, type=str, metavar="DIR")
    field_flag(g, VideoPolicy, "video_allow", "--video-allow", action="append", default=None, type=str,
               metavar="URL_PREFIX")
    field_flag(g, VideoPolicy, "video_timeout_s")


def redis_flag(p: argparse.ArgumentParser) -> None:
    field_flag(p, StreamConfig, "redis_url", "--redis", metavar="URL")


def stream_flags(p: argparse.ArgumentParser) -> None:
    """Where turns come from and labels go, and how the worker batches and claims."""
    redis_flag(p)
    g = p.add_argument_group("streams")
    for name in ("in_stream", "out_stream", "dead_stream", "group", "consumer", "batch_size", "batch_wait_ms",
                 "claim_idle_ms", "claim_interval_ms", "max_deliveries", "max_text_chars", "context_ttl_s"):
        field_flag(g, StreamConfig, name)


def worker_flags(p: argparse.ArgumentParser) -> None:
    """Everything a streaming worker takes: streams, pool, model, video."""
    stream_flags(p)
    pool_flags(p)
    model_flags(p)
    video_flags(p)


def data_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="data root, dataset folder or file (default: $DIALOGUELLM_DATA or ../shared/data)")


def json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
