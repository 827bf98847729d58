"""`SegmentDescriber`: decode a segment and describe it; every failure becomes an error result."""

from __future__ import annotations

import time
from collections.abc import Sequence

from pipeline.core.descriptions import DescribeResult
from pipeline.core.errors import VideoError
from pipeline.core.turns import VideoSegment
from pipeline.core.video_policy import VideoPolicy
from workers.video.decoder import DecodeConfig, SegmentDecoder
from workers.video.describers import get_describer


class SegmentDescriber:
    def __init__(self, describer: str = "cpu", decode: DecodeConfig = DecodeConfig(),
                 policy: VideoPolicy = VideoPolicy(), **options) -> None:
        self.decoder = SegmentDecoder(decode, policy)
        self._choice, self._options = describer, options
        self._describer = None

    @property
    def describer(self):
        """The describer, loaded on first use: a video that cannot be decoded never loads a model."""
        if self._describer is None:
            self._describer = get_describer(self._choice, **self._options)
        return self._describer

    @property
    def name(self) -> str:
        return self.describer.name

    @property
    def version(self) -> str:
        return self.describer.version

    def describe(self, segment: VideoSegment) -> DescribeResult:
        """The segment in words, or why not (a broken video never raises)."""
        start = time.perf_counter()
        try:
            frames = self.decoder.decode(segment)
        except VideoError as e:
            return DescribeResult(error=str(e), decode_s=time.perf_counter() - start)
        decoded = time.perf_counter()
        try:
            description = self.describer.describe(frames)
        except Exception as e:  # a describer bug or a model failure must not stop the turn
            return DescribeResult(error=f"describer {self.name} failed: {type(e).__name__}: {e}",
                                  frames=len(frames.frames), decode_s=decoded - start)
        if frames.damaged:
            description.cues["damaged"] = frames.damaged
        return DescribeResult(description, None, len(frames.frames), decoded - start, time.perf_counter() - decoded)

    def describe_all(self, segments: Sequence[VideoSegment]) -> list[DescribeResult]:
        return [self.describe(s) for s in segments]
