"""The watch server's typed configuration, validated once at start."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from pipeline.alerts.config import DEFAULT_ALERTS_STREAM
from pipeline.core import envs
from pipeline.core.config_fields import field_help
from pipeline.core.errors import ConfigError
from pipeline.core.redaction import RedactionConfig
from pipeline.stream.config import DEFAULT_IN_STREAM, DEFAULT_OUT_STREAM, check_redis_url, redis_url_field

TOKEN_ENV = "DIALOGUELLM_WATCH_TOKEN"
DEFAULT_CORRECTIONS_STREAM = "dialoguellm:corrections"


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@dataclass(frozen=True)
class WatchConfig:
    """What the page reads (read-only) and where it is served.

    Conversations stay on the page `window_min` minutes after their last label (by the label
    entry's id time); each keeps its last `keep_turns` turns. Off loopback a `token` is required.
    Texts (`show_text`) are redacted (`pipeline.core.redaction`) unless `show_raw_text`.
    With `corrections`, holders of a named token (`tokens_file`) may correct a turn's label: the
    server XADDs a `CorrectionMessage` to `corrections_stream` (its texts redacted unless
    `corrections_raw_text`); the page is read-only otherwise.
    """

    redis_url: str = redis_url_field()
    labels_stream: str = field(default=DEFAULT_OUT_STREAM, metadata=field_help("the labels stream to show"))
    alerts_stream: str = field(default=DEFAULT_ALERTS_STREAM, metadata=field_help(
        "the alerts stream (absent: no alerts)"))
    in_stream: str = field(default=DEFAULT_IN_STREAM, metadata=field_help(
        "the input stream whose context store (IN_STREAM:ctx:ID) holds the texts shown with --show-text"))
    host: str = field(default="127.0.0.1", metadata=field_help("address to bind; any but loopback needs --token"))
    port: int = field(default=8765, metadata=field_help("port to bind (0: any free port)"))
    token: str | None = field(default_factory=lambda: envs.read(TOKEN_ENV), metadata=field_help(
        f"the page's access token (default: ${TOKEN_ENV}); sent as 'Authorization: Bearer T' or opened once "
        "as /?token=T, which sets a cookie"))
    show_text: bool = field(default=False, metadata=field_help(
        "show the utterances (from the context store) in a conversation's view, redacted: card numbers, IBANs, "
        "e-mail addresses and phone numbers replaced by <CARD>, <IBAN>, <EMAIL>, <PHONE> (default: off, labels "
        "only)"))
    show_raw_text: bool = field(default=False, metadata=field_help(
        "UNREDACTED: show the utterances exactly as spoken, card numbers, e-mail addresses and phone numbers "
        "included (implies --show-text). Only where every viewer may see payment and contact data (PCI DSS, "
        "GDPR)"))
    window_min: float = field(default=30.0, metadata=field_help(
        "list conversations with a label in the last N minutes"))
    keep_turns: int = field(default=100, metadata=field_help("turns kept per conversation (the latest by turn id)"))
    corrections: bool = field(default=False, metadata=field_help(
        "let supervisors correct a turn's label on the page (needs --tokens-file; default: the page is read-only)"))
    corrections_stream: str = field(default=DEFAULT_CORRECTIONS_STREAM, metadata=field_help(
        "where corrections are written (XADD) and read back to show them"))
    tokens_file: str | None = field(default=None, metadata=field_help(
        "named tokens, one 'NAME TOKEN' a line: each opens the page like --token, and a correction made with it "
        "records NAME as who made it", metavar="FILE"))
    corrections_raw_text: bool = field(default=False, metadata=field_help(
        "UNREDACTED: keep the corrected turn's text and the turns before it in the correction as spoken "
        "(default: redacted like every text that leaves the worker)"))
    redaction: RedactionConfig = field(default_factory=RedactionConfig)

    @property
    def window_ms(self) -> int:
        return int(self.window_min * 60_000)

    def redis_keys(self) -> tuple[str, ...]:
        """The keys that must be streams (or absent) before the page starts."""
        return (self.labels_stream, self.alerts_stream, self.corrections_stream)

    def __post_init__(self) -> None:
        check_redis_url(self.redis_url)
        if self.show_raw_text:
            object.__setattr__(self, "show_text", True)
        for name in ("labels_stream", "alerts_stream", "in_stream", "host", "corrections_stream"):
            if not getattr(self, name):
                raise ConfigError(f"{name}: must not be empty")
        if self.labels_stream == self.alerts_stream:
            raise ConfigError("alerts_stream: must differ from labels_stream")
        if self.corrections_stream in (self.labels_stream, self.alerts_stream, self.in_stream):
            raise ConfigError("corrections_stream: must differ from the labels, alerts and input streams")
        if self.tokens_file is not None:
            from pipeline.watch.security import load_tokens

            load_tokens(self.tokens_file)  # a bad line fails now, naming the field and the line
        if self.corrections and self.tokens_file is None:
            raise ConfigError("tokens_file: --corrections needs --tokens-file (who made a correction is the name "
                              "of the token it was made with)")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port: {self.port} is not a port number")
        if not self.window_min > 0:
            raise ConfigError(f"window_min: must be > 0, got {self.window_min}")
        if self.keep_turns <= 0:
            raise ConfigError(f"keep_turns: must be > 0, got {self.keep_turns}")
        if self.token is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{16,}", self.token):
            raise ConfigError("token: use at least 16 letters, digits or - _ . ~ (e.g. the output of "
                              "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if self.token is None and self.tokens_file is None and not is_loopback(self.host):
            raise ConfigError(f"token: binding {self.host} (not a loopback address) requires --token "
                              f"(or ${TOKEN_ENV}): anyone who reaches it would read the conversations")
