"""`dialoguellm alerts`' typed configuration, validated once at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.config_fields import field_help
from pipeline.core.errors import ConfigError
from pipeline.stream.config import DEFAULT_OUT_STREAM, check_redis_url, default_consumer, redis_url_field

DEFAULT_ALERTS_STREAM = "dialoguellm:alerts"
DEFAULT_ALERTS_GROUP = "dialoguellm-alerts"


@dataclass(frozen=True)
class AlertsConfig:
    """Where labels come from and alerts go, and how the consumer orders, claims and keeps state.

    Per-conversation state lives at `{alerts_stream}:{group}:state:{conversation_id}`, expiring
    `state_ttl_s` after the conversation's last label; malformed label entries go to
    `{alerts_stream}:dead` with the reason.
    """

    redis_url: str = redis_url_field()
    labels_stream: str = field(default=DEFAULT_OUT_STREAM, metadata=field_help("labels in (serve's output stream)"))
    alerts_stream: str = field(default=DEFAULT_ALERTS_STREAM, metadata=field_help("alerts out"))
    group: str = field(default=DEFAULT_ALERTS_GROUP, metadata=field_help(
        "consumer group on the labels stream (consumers of one group share the work)"))
    consumer: str = field(default_factory=default_consumer, metadata=field_help(
        "this consumer's name in the group (default: HOST-PID)"))
    batch_size: int = field(default=256, metadata=field_help("labels read per call"))
    reorder_wait_ms: int = field(default=3000, metadata=field_help(
        "how long a label waits for the turn before it (labels are applied in turn order)"))
    claim_idle_ms: int = field(default=30_000, metadata=field_help(
        "take over labels idle this long under another consumer (one that stopped)"))
    claim_interval_ms: int = field(default=5_000, metadata=field_help("how often to look for them"))
    state_ttl_s: int = field(default=24 * 3600, metadata=field_help(
        "how long a conversation's rule state outlives its last label"))

    @property
    def key_prefix(self) -> str:
        return f"{self.alerts_stream}:{self.group}"

    @property
    def dead_letter_stream(self) -> str:
        return f"{self.alerts_stream}:dead"

    def redis_keys(self) -> tuple[str, ...]:
        """The keys that must be streams (or absent) before the consumer starts."""
        return (self.labels_stream, self.alerts_stream, self.dead_letter_stream)

    def __post_init__(self) -> None:
        check_redis_url(self.redis_url)
        for name in ("labels_stream", "alerts_stream", "group", "consumer"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: must not be empty")
        if self.labels_stream in (self.alerts_stream, self.dead_letter_stream):
            raise ConfigError("alerts_stream: must differ from the labels stream")
        for name in ("batch_size", "claim_idle_ms", "claim_interval_ms", "state_ttl_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.reorder_wait_ms < 0:
            raise ConfigError(f"reorder_wait_ms: must be ≥ 0, got {self.reorder_wait_ms}")
