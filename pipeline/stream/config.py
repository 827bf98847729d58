"""The streaming worker's typed configuration, validated once at start."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pipeline.errors import ConfigError
from pipeline.stream.redis_checks import redact

DEFAULT_IN_STREAM = "dialoguellm:turns"
DEFAULT_OUT_STREAM = "dialoguellm:labels"
DEFAULT_GROUP = "dialoguellm"
REDIS_SCHEMES = ("redis", "rediss", "unix")


def default_consumer() -> str:
    import os

    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class StreamConfig:
    """Where turns come from and labels go, and how the worker batches, claims and gives up.

    `claim_idle_ms` must exceed the longest a batch takes: an entry idle that long is taken
    over from its consumer as dead. Context for a turn is kept per conversation for
    `context_ttl_s` after its last turn, at most `context_keep` turns.
    """

    redis_url: str = "redis://127.0.0.1:6379/0"
    in_stream: str = DEFAULT_IN_STREAM
    out_stream: str = DEFAULT_OUT_STREAM
    dead_stream: str | None = None
    group: str = DEFAULT_GROUP
    consumer: str = field(default_factory=default_consumer)
    batch_size: int = 32
    batch_wait_ms: int = 50
    claim_idle_ms: int = 60_000
    claim_interval_ms: int = 5_000
    max_deliveries: int = 3
    max_inflight_per_engine: int = 2
    max_text_chars: int = 2000
    context_turns: int = 2
    context_keep: int = 16
    context_ttl_s: int = 24 * 3600
    done_ttl_s: int = 7 * 24 * 3600
    metrics_port: int | None = None

    @property
    def dead_letter_stream(self) -> str:
        return self.dead_stream or f"{self.in_stream}:dead"

    def __post_init__(self) -> None:
        scheme = urlsplit(self.redis_url).scheme
        if scheme not in REDIS_SCHEMES:
            raise ConfigError(f"redis: {redact(self.redis_url)!r} is not a redis://, rediss:// or unix:// URL")
        for name in ("in_stream", "out_stream", "group", "consumer"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: must not be empty")
        streams = {self.in_stream, self.out_stream, self.dead_letter_stream}
        if len(streams) < 3:
            raise ConfigError("out_stream/dead_stream: the input, output and dead-letter streams must differ")
        for name in ("batch_size", "max_deliveries", "max_inflight_per_engine", "max_text_chars",
                     "context_ttl_s", "done_ttl_s", "claim_idle_ms", "claim_interval_ms"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms: must be ≥ 0, got {self.batch_wait_ms}")
        if self.context_turns < 0:
            raise ConfigError(f"context_turns: must be ≥ 0, got {self.context_turns}")
        if self.context_keep < self.context_turns:
            raise ConfigError(f"context_keep: must be ≥ context_turns ({self.context_turns}), got {self.context_keep}")
        if self.metrics_port is not None and not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"metrics_port: {self.metrics_port} is not a port number")
