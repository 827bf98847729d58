"""Descriptions kept so no segment is described twice: on disk for batch runs, in Redis for the stream.

The key is a hash of the video's fingerprint (a local file's absolute path, size and
modification time; any other URI as it is), the segment's bounds, and the describer's name and
version. Only descriptions are kept, not failures: a file fixed in place changes its
fingerprint, and a network error may pass.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.core.descriptions import Description
from pipeline.core.turns import VideoSegment


def video_fingerprint(uri: str) -> str:
    """What identifies a video's content cheaply: path + size + mtime for local files."""
    path = Path(uri[7:] if uri.startswith("file://") else uri)
    try:
        stat = path.stat()
    except OSError:
        return uri
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def cache_key(segment: VideoSegment, describer: str, version: str) -> str:
    raw = json.dumps([video_fingerprint(segment.uri), round(segment.start, 3), round(segment.end, 3), describer,
                      version])
    return hashlib.sha256(raw.encode()).hexdigest()


def _dump(description: Description) -> str:
    return json.dumps(asdict(description))


def _load(raw: str | bytes | None) -> Description | None:
    return Description(**json.loads(raw)) if raw else None


class DiskDescriptionCache:
    """One small JSON file a description under `folder` (safe for several processes)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> Description | None:
        try:
            return _load(self._path(key).read_text())
        except (OSError, ValueError, TypeError):
            return None

    def put(self, key: str, description: Description) -> None:
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(_dump(description))
        tmp.replace(path)


class RedisDescriptionCache:
    """Descriptions as Redis strings `{prefix}:{key}` with a TTL (any async redis-py client)."""

    def __init__(self, redis: Any, prefix: str = "dialoguellm:descriptions", ttl_s: int = 30 * 24 * 3600) -> None:
        self.redis, self.prefix, self.ttl_s = redis, prefix, ttl_s

    async def get_many(self, keys: Sequence[str]) -> list[Description | None]:
        if not keys:
            return []
        return [_load(v) for v in await self.redis.mget([f"{self.prefix}:{k}" for k in keys])]

    async def put_many(self, items: dict[str, Description]) -> None:
        if not items:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, description in items.items():
            pipe.set(f"{self.prefix}:{key}", _dump(description), ex=self.ttl_s)
        await pipe.execute()
