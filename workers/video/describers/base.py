"""The interface every describer implements: sampled frames of a segment in, a `Description` out."""

from __future__ import annotations

from typing import Protocol

from pipeline.core.descriptions import Description
from workers.video.decoder import SegmentFrames


class Describer(Protocol):
    name: str
    version: str  # changes whenever the same frames could be described differently (keys the cache)

    def describe(self, frames: SegmentFrames) -> Description: ...
