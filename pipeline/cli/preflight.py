"""`preflight(config)`: the checks that need I/O before a command starts work, in one place.

Building a command's config already checked every value; this reads what the config names:
every adapter folder (a PEFT adapter, its rank within the engine's maximum) and, for every part
that uses Redis, the server (credentials, and that its keys are streams or absent). A mistake is
one line on stderr before an engine spends a minute starting, never a traceback after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class UsesRedis(Protocol):
    """A config part that reads or writes Redis streams."""

    redis_url: str

    def redis_keys(self) -> tuple[str, ...]: ...


def parts(config: Any) -> Iterator[Any]:
    """`config` and every config dataclass inside it, depth first."""
    yield config
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from parts(value)


def preflight(config: Any) -> None:
    """Check what `config` names outside the process; raises a one-line `DialogueLLMError`."""
    from workers.adapters import check_adapter
    from workers.engine_config import EngineConfig

    keys: dict[str, list[str]] = {}
    for part in parts(config):
        if isinstance(part, EngineConfig):
            for name, path in part.adapters.items():
                check_adapter(name, path, part.max_lora_rank)
        if isinstance(part, UsesRedis):
            keys.setdefault(part.redis_url, []).extend(part.redis_keys())
    if keys:
        from pipeline.stream.redis_checks import check_streams, connect

        for url, names in keys.items():
            check_streams(connect(url), tuple(dict.fromkeys(names)), url)
