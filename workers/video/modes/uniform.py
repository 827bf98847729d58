"""`uniform`: `count` frames evenly spread over the segment (the frame nearest each of `count` instants).

When the segment holds at least 4× as many frames as wanted, frames no other frame refers to
(B-frames) are not decoded at all: the nearest reference frame to an instant is at most a few
frames away, and decoding costs about half (measured: 1.06× plain PyAV instead of 0.76×)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from workers.video.modes.base import TimedFrame


class UniformMode:
    name = "uniform"

    def prepare(self, stream: Any, start: float, end: float, count: int) -> None:
        rate = stream.average_rate or stream.guessed_rate
        if rate and (end - start) * float(rate) >= 4 * count:
            stream.codec_context.skip_frame = "NONREF"

    def pick(self, frames: Iterable[TimedFrame], start: float, end: float, count: int) -> list[TimedFrame]:
        # Streams through the frames keeping only the chosen ones: a long segment costs no memory.
        targets = [start + (i + 0.5) * (end - start) / count for i in range(count)]
        chosen: list[TimedFrame] = []
        previous: TimedFrame | None = None
        i = 0
        for t, frame in frames:
            while i < count and t >= targets[i]:
                nearer = previous if previous and targets[i] - previous[0] < t - targets[i] else (t, frame)
                if not chosen or chosen[-1][0] != nearer[0]:
                    chosen.append(nearer)
                i += 1
            if i == count:
                break
            previous = (t, frame)
        if i < count and previous and (not chosen or chosen[-1][0] != previous[0]):
            chosen.append(previous)  # the segment ended (or the file did) before the last instants
        return chosen
