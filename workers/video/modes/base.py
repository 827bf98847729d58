"""The interface of a sampling mode."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

TimedFrame = tuple[float, Any]  # (seconds, av.VideoFrame)


class SamplingMode(Protocol):
    name: str

    def prepare(self, stream: Any, start: float, end: float, count: int) -> None:
        """Set up the decoder before any frame is decoded (e.g. skip frames the mode never uses)."""

    def pick(self, frames: Iterable[TimedFrame], start: float, end: float, count: int) -> list[TimedFrame]:
        """Choose up to `count` frames from `frames` (in time order, all within [start, end))."""
