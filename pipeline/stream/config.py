"""The streaming worker's typed configuration, validated once at start."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipeline.core.config_fields import field_help
from pipeline.core.errors import ConfigError
from pipeline.core.speakers import SpeakerPolicy, label_speakers_field
from pipeline.stream.redis_checks import redact

DEFAULT_IN_STREAM = "dialoguellm:turns"
DEFAULT_OUT_STREAM = "dialoguellm:labels"
DEFAULT_GROUP = "dialoguellm"
DEFAULT_CONTROL_STREAM = "dialoguellm:control"
REDIS_SCHEMES = ("redis", "rediss", "unix")


def redis_url_field() -> Any:
    """The `redis_url` field every Redis-using config declares: one default, one help text."""
    return field(default="redis://127.0.0.1:6379/0", metadata=field_help(
        "redis://[user:pass@]host:port/db, rediss:// for TLS, or unix:///path", flag="--redis", metavar="URL"))


def control_stream_field() -> Any:
    """The control stream's name: the same flag on `serve` and `adapters ...`."""
    return field(default=DEFAULT_CONTROL_STREAM, metadata=field_help(
        "the control stream: adapters loaded, made the default and unloaded while workers run"))


def adapters_root_field(what: str) -> Any:
    return field(default=None, metadata=field_help(what, metavar="DIR"))


def worker_report_key(control_stream: str, consumer: str) -> str:
    """The hash in which a worker reports what it serves (kept alive by its heartbeat)."""
    return f"{control_stream}:workers:{consumer}"


def check_redis_url(url: str) -> None:
    """A `ConfigError` unless `url` is a redis://, rediss:// or unix:// URL (shown without its password)."""
    if urlsplit(url).scheme not in REDIS_SCHEMES:
        raise ConfigError(f"redis: {redact(url)!r} is not a redis://, rediss:// or unix:// URL")


def default_consumer() -> str:
    import os

    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class StreamConfig:
    """Where turns come from and labels go, and how the worker batches, claims and gives up.

    `claim_idle_ms` must exceed the longest a batch takes: an entry idle that long is taken
    over from its consumer as dead. Context for a turn is kept per conversation for
    `context_ttl_s` after its last turn, at most `context_keep` turns. With `label_speakers`, only
    the speakers it finds get an emotion; the others' turns are context only (`pipeline.core.speakers`).
    """

    redis_url: str = redis_url_field()
    in_stream: str = field(default=DEFAULT_IN_STREAM, metadata=field_help("turns in"))
    out_stream: str = field(default=DEFAULT_OUT_STREAM, metadata=field_help("labels out"))
    dead_stream: str | None = field(default=None, metadata=field_help("dead letters (default: IN_STREAM:dead)"))
    group: str = field(default=DEFAULT_GROUP, metadata=field_help("consumer group"))
    consumer: str = field(default_factory=default_consumer, metadata=field_help(
        "this worker's name in the group (default: HOST-PID)"))
    batch_size: int = field(default=32, metadata=field_help("entries per micro-batch"))
    batch_wait_ms: int = field(default=50, metadata=field_help(
        "how long a micro-batch waits to fill after its first entry"))
    claim_idle_ms: int = field(default=60_000, metadata=field_help(
        "take over entries idle this long under another consumer"))
    claim_interval_ms: int = field(default=5_000, metadata=field_help("how often to look for them"))
    max_deliveries: int = field(default=3, metadata=field_help(
        "attempts before an entry goes to the dead-letter stream"))
    max_text_chars: int = field(default=2000, metadata=field_help("longer texts are dead-lettered"))
    context_keep: int = field(default=16, metadata=field_help(
        "turns of a conversation the context store keeps (at least as many as the engine's prompt shows)"))
    context_ttl_s: int = field(default=24 * 3600, metadata=field_help(
        "how long a conversation's context outlives its last turn"))
    done_ttl_s: int = 7 * 24 * 3600
    label_speakers: str | None = label_speakers_field()
    metrics_port: int | None = field(default=None, metadata=field_help("serve Prometheus metrics on this port"))
    control_stream: str = control_stream_field()
    adapters_root: str | None = adapters_root_field(
        "the folder adapters loaded through the control stream must lie in (symlinks resolved); without it "
        "none is loaded while running")
    heartbeat_s: float = field(default=5.0, metadata=field_help(
        "how often the worker reports what it serves (`dialoguellm adapters list`); a report expires after 3"))

    @property
    def dead_letter_stream(self) -> str:
        return self.dead_stream or f"{self.in_stream}:dead"

    @property
    def speakers(self) -> SpeakerPolicy:
        """Who gets an emotion (`label_speakers`; the others' turns are context only)."""
        return SpeakerPolicy(self.label_speakers)

    def redis_keys(self) -> tuple[str, ...]:
        """The keys that must be streams (or absent) before the worker starts."""
        return (self.in_stream, self.out_stream, self.dead_letter_stream, self.control_stream)

    def __post_init__(self) -> None:
        check_redis_url(self.redis_url)
        for name in ("in_stream", "out_stream", "group", "consumer"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: must not be empty")
        streams = {self.in_stream, self.out_stream, self.dead_letter_stream}
        if len(streams) < 3:
            raise ConfigError("out_stream/dead_stream: the input, output and dead-letter streams must differ")
        if not self.control_stream or self.control_stream in streams:
            raise ConfigError("control_stream: must be set and differ from the input, output and dead-letter streams")
        if self.heartbeat_s <= 0:
            raise ConfigError(f"heartbeat_s: must be > 0, got {self.heartbeat_s}")
        for name in ("batch_size", "max_deliveries", "context_keep", "max_text_chars",
                     "context_ttl_s", "done_ttl_s", "claim_idle_ms", "claim_interval_ms"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms: must be ≥ 0, got {self.batch_wait_ms}")
        if self.metrics_port is not None and not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"metrics_port: {self.metrics_port} is not a port number")
        SpeakerPolicy(self.label_speakers)  # a bad regular expression fails here, naming label_speakers
