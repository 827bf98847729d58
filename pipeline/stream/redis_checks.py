"""What every command checks of Redis before it starts work, and how Redis errors read.

One place for both: a URL is never shown with its password (`redis://worker:***@host:6379/0`),
credentials and the type of every key a command will use are checked before an engine starts, and
a reply error (WRONGTYPE, NOPERM, WRONGPASS, NOGROUP, OOM) becomes one line naming the key and the
cause instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.core.errors import ConfigError


def redact(url: str) -> str:
    """`url` with its password replaced by `***` (user names stay: they help find the account)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def describe_error(error: BaseException, url: str | None = None, key: str | None = None) -> str:
    """One line for a Redis error: what failed, where (the redacted URL or the key) and why."""
    import redis

    text = str(error)
    if url:
        text = text.replace(url, redact(url))
    where = f" at {redact(url)}" if url else ""
    on = f" on key {key!r}" if key else ""
    if isinstance(error, redis.exceptions.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return f"redis: authentication failed{where} ({text})"
    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)):
        return f"redis: no server answers{where} ({type(error).__name__})"
    code = text.split(" ", 1)[0]
    if code in ("WRONGTYPE", "NOPERM", "NOGROUP", "OOM"):
        return f"redis: {code}{on}{where}: {text.split(' ', 1)[1] if ' ' in text else text}"
    return f"redis: {type(error).__name__}{on}{where}: {text}"


def connect(url: str, **options: Any) -> Any:
    """A client for `url`, checked with PING: a wrong password or no server is a one-line error."""
    import redis

    client = redis.Redis.from_url(url, **options)
    try:
        client.ping()
    except redis.exceptions.RedisError as e:
        raise ConfigError(describe_error(e, url)) from None
    return client


def check_streams(client: Any, keys: Iterable[str], url: str) -> None:
    """Every key is a stream or absent (a stream is then created on first write)."""
    import redis

    for key in keys:
        try:
            kind = client.type(key)
        except redis.exceptions.RedisError as e:
            raise ConfigError(describe_error(e, url, key)) from None
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in ("stream", "none"):
            raise ConfigError(f"redis: key {key!r} at {redact(url)} is a {kind}, not a stream")
