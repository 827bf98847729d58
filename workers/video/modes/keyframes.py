"""`keyframes`: only the segment's keyframes are decoded (fast: the rest are skipped), up to `count`
of them evenly chosen. A segment without a keyframe yields no frame."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from workers.video.modes.base import TimedFrame


class KeyframesMode:
    name = "keyframes"

    def prepare(self, stream: Any, start: float, end: float, count: int) -> None:
        stream.codec_context.skip_frame = "NONKEY"

    def pick(self, frames: Iterable[TimedFrame], start: float, end: float, count: int) -> list[TimedFrame]:
        keys = list(frames)
        if len(keys) <= count:
            return keys
        return [keys[round(i * (len(keys) - 1) / (count - 1))] for i in range(count)] if count > 1 else keys[:1]
