"""`SegmentDecoder`: a video segment `{uri, start, end}` to a few RGB frames, with PyAV.

Opens only what its `VideoPolicy` allows, through `workers.video.sources` (local files under the
video roots, http(s) URLs under the allowed prefixes; see there), within the policy's deadline,
seeks to `start` (the keyframe before it), decodes
forward to `end` with threaded (slice) decoding, and keeps the frames the sampling mode picks, scaled
so their longer side is at most `max_side`. Every way a segment can fail raises `VideoError`
with a reason (documented results):

- a URI the policy refuses, or not a regular file: "video '...' refused: ..." (nothing opened);
- opening, reading and decoding past `video_timeout_s`: "... took longer than the N s deadline";
- a missing, unreadable or corrupt file: "cannot open ..."; damage found mid-way keeps the
  frames decoded before it (`SegmentFrames.damaged` holds the reason) or, with none, fails;
- no video stream (an audio-only file): "no video stream";
- a zero-length or reversed segment: "zero-length segment";
- a segment that starts after the video ends: "segment starts at S s, after the video ends";
- frames without timestamps (raw elementary streams): timed by their index at the stream's
  frame rate, decoded from the file's start; with no frame rate either: "no timestamps".
Variable frame rates need nothing special: each frame's own timestamp is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.config_fields import field_help
from pipeline.core.errors import ConfigError, VideoError
from pipeline.core.turns import VideoSegment
from pipeline.core.video_policy import VideoPolicy
from workers.video.modes import MODES, get_sampling_mode

THREAD_TYPES = ("slice", "frame", "auto")


@dataclass(frozen=True)
class DecodeConfig:
    """How segments are sampled: `frames` per segment, by `mode`, at most `max_side` pixels."""

    frames: int = field(default=8, metadata=field_help("frames sampled per segment"))
    mode: str = field(default="uniform", metadata=field_help(
        "uniform: frames evenly over the segment; keyframes: its keyframes only", flag="--sampling",
        choices=lambda: tuple(MODES)))
    max_side: int = 640
    threads: int = 0  # 0: FFmpeg picks (one per core)
    # Slice threading: frame threading measured slower here, its pipeline refilling after every seek.
    thread_type: str = "slice"

    def __post_init__(self) -> None:
        if self.frames <= 0:
            raise ConfigError(f"frames: must be > 0, got {self.frames}")
        if self.mode not in MODES:
            raise ConfigError(f"sampling: {self.mode!r} is not one of {', '.join(MODES)}")
        if self.max_side < 16:
            raise ConfigError(f"max_side: must be ≥ 16, got {self.max_side}")
        if self.thread_type not in THREAD_TYPES:
            raise ConfigError(f"thread_type: {self.thread_type!r} is not one of {', '.join(THREAD_TYPES)}")
        if self.threads < 0:
            raise ConfigError(f"threads: must be ≥ 0, got {self.threads}")


@dataclass
class SegmentFrames:
    """The sampled frames (H×W×3 uint8 RGB) and their times in seconds."""

    segment: VideoSegment
    frames: list[Any] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    decoded: int = 0
    damaged: str | None = None


class SegmentDecoder:
    """Decodes what `policy` allows (the default policy opens nothing)."""

    def __init__(self, config: DecodeConfig = DecodeConfig(), policy: VideoPolicy = VideoPolicy()) -> None:
        self.config = config
        self.policy = policy
        self.mode = get_sampling_mode(config.mode)

    def decode(self, segment: VideoSegment) -> SegmentFrames:
        """The segment's sampled frames, or `VideoError` saying why there are none."""
        from workers.video.sources import Deadline

        if segment.end <= segment.start:
            raise VideoError(f"zero-length segment ({segment.start}s to {segment.end}s)")
        deadline = Deadline(self.policy.video_timeout_s)
        try:
            return self._decode(segment, seek=True, deadline=deadline)
        except _NoTimestamps:
            return self._decode(segment, seek=False, deadline=deadline)

    def _decode(self, segment: VideoSegment, seek: bool, deadline: Any) -> SegmentFrames:
        from workers.video.sources import open_video

        with open_video(segment.uri, self.policy, deadline) as container:
            if not container.streams.video:
                raise VideoError(f"no video stream in {segment.uri} (audio only?)")
            stream = container.streams.video[0]
            stream.thread_type = self.config.thread_type.upper()
            stream.thread_count = self.config.threads
            duration = _duration(container, stream)
            # A segment running past the end is sampled over the part that exists.
            end = min(segment.end, duration) if duration and duration > segment.start else segment.end
            self.mode.prepare(stream, segment.start, end, self.config.frames)
            result = SegmentFrames(segment)
            last = [None]  # the last frame time seen, to tell "past the end" from "no frame"
            timed = self._timed(container, stream, segment, result, last, seek, deadline)
            for t, frame in self.mode.pick(timed, segment.start, end, self.config.frames):
                result.frames.append(self._rgb(frame))
                result.times.append(round(t, 3))
        if not result.frames:
            if result.damaged:
                raise VideoError(f"corrupt or truncated video {segment.uri}: {result.damaged}")
            if last[0] is not None and last[0] < segment.start:
                raise VideoError(f"segment starts at {segment.start}s, after the video's last frame ({last[0]:.2f}s)")
            if duration is not None and segment.start >= duration:
                raise VideoError(f"segment starts at {segment.start}s, after the video ends ({duration:.2f}s)")
            raise VideoError(f"no {self.mode.name} frame between {segment.start}s and {segment.end}s")
        return result

    def _timed(self, container: Any, stream: Any, segment: VideoSegment, result: SegmentFrames,
               last: list, seek: bool, deadline: Any) -> Iterator[tuple[float, Any]]:
        """Decoded frames with their times, from (about) `start` until `end`; damage ends it quietly."""
        import av

        rate = stream.average_rate or stream.guessed_rate
        try:
            seek = seek and segment.start > 0 and stream.time_base is not None
            if seek:
                try:
                    container.seek(int(segment.start / stream.time_base), stream=stream, backward=True)
                except av.error.FFmpegError:
                    raise _NoTimestamps from None  # not seekable (a raw stream): decode from the start
            frames = container.decode(stream)
            first = next(frames, None)
            if first is None:
                return
            by_index = first.time is None
            if by_index and not rate:
                raise VideoError(f"{segment.uri}: frames carry no timestamps and the stream no frame rate")
            if by_index and seek:
                raise _NoTimestamps  # a frame's time is then its index: decode again from the start
            for index, frame in enumerate(_chain(first, frames)):
                deadline.check(segment.uri, "decoding")
                t = index / float(rate) if by_index else frame.time
                if t is None:
                    continue
                result.decoded += 1
                last[0] = t
                if t < segment.start:
                    continue
                if t >= segment.end:
                    return
                yield t, frame
        except av.error.FFmpegError as e:
            result.damaged = _reason(e)

    def _rgb(self, frame: Any) -> Any:
        scale = min(1.0, self.config.max_side / max(frame.width, frame.height))
        width, height = max(2, round(frame.width * scale)) // 2 * 2, max(2, round(frame.height * scale)) // 2 * 2
        return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()


class _NoTimestamps(Exception):
    """Frames must be timed by index (no timestamps, or no seeking): decode from the file's start."""


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)
