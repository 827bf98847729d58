"""Video actors in Ray: each decodes and describes segments; `VideoPool` spreads a batch over them.

CPU actors for decoding and the `cpu` describer; with `vlm`, each actor takes a GPU. Every actor
opens only what the pool's `VideoPolicy` allows. Describing sends one segment at a time to each
actor, each call with a deadline (`video_timeout_s` + `describe_grace_s`): a segment past it
gets an error result and its actor, taken as hung, is killed and replaced. Decoding alone (the
benchmark) cuts a batch in one piece per actor, at most `max_inflight` calls queued on each.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.config_fields import field_help
from pipeline.core.descriptions import DescribeResult
from pipeline.core.errors import ConfigError, DialogueLLMError
from pipeline.core.turns import VideoSegment
from pipeline.core.video_policy import VideoPolicy
from workers.video.decoder import DecodeConfig


class VideoActor:
    """One `SegmentDescriber` in a Ray actor (no Ray import needed here)."""

    def __init__(self, describer: str, decode: DecodeConfig, options: dict[str, Any],
                 policy: VideoPolicy = VideoPolicy()) -> None:
        from workers.video.segment_describer import SegmentDescriber

        self.worker = SegmentDescriber(describer, decode, policy, **options)

    def info(self) -> dict:
        import os

        return {"describer": self.worker.name, "version": self.worker.version, "pid": os.getpid()}

    def describe(self, segments: Sequence[VideoSegment]) -> list[DescribeResult]:
        return self.worker.describe_all(segments)

    def decode(self, segments: Sequence[VideoSegment]) -> list[tuple[int, int, str | None]]:
        """Decode only (benchmarks): per segment, frames kept, frames decoded and the error, if any."""
        from pipeline.core.errors import VideoError

        out = []
        for segment in segments:
            try:
                frames = self.worker.decoder.decode(segment)
                out.append((len(frames.frames), frames.decoded, None))
            except VideoError as e:
                out.append((0, 0, str(e)))
        return out


def describer_names() -> tuple[str, ...]:
    """Every describer of the registry, and `none` (turns labelled from their text)."""
    from workers.video.describers import DESCRIBERS

    return (*DESCRIBERS, NO_DESCRIBER)


NO_DESCRIBER = "none"
DEFAULT_VLM = "Qwen/Qwen2.5-VL-7B-Instruct"


@dataclass(frozen=True)
class VideoPoolConfig:
    """How a turn's video becomes words, in video actors."""

    describer: str = field(default="cpu", metadata=field_help(
        "how a turn's video becomes words: cpu (face and expression cues), vlm (a vision-language model) "
        "or none", choices=describer_names))
    actors: int = field(default=1, metadata=field_help("video decoder/describer actors", flag="--video-actors"))
    vlm_model: str = field(default=DEFAULT_VLM, metadata=field_help("the vlm describer's model"))
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    max_inflight: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None  # None: 1 for `vlm`, else 0
    # Set by the command's config from its pool's (one setting for every actor of a command).
    ray_address: str | None = None
    startup_timeout_s: float = 120.0
    policy: VideoPolicy = field(default_factory=VideoPolicy, metadata=field_help(
        "what the actors may open, and the deadline of each segment (default: nothing)"))
    describe_grace_s: float = field(default=5.0, metadata=field_help(
        "seconds a describer may take on top of the segment's video deadline before its actor is "
        "taken as hung and replaced"))

    @property
    def enabled(self) -> bool:
        return self.describer != NO_DESCRIBER

    @property
    def options(self) -> dict[str, Any]:
        """The describer's own options."""
        return {"model": self.vlm_model} if self.describer == "vlm" else {}

    def __post_init__(self) -> None:
        if self.describer not in describer_names():
            raise ConfigError(f"describer: {self.describer!r} is not one of {', '.join(describer_names())}")
        if self.actors <= 0:
            raise ConfigError(f"video_actors: must be > 0, got {self.actors}")
        if self.max_inflight <= 0:
            raise ConfigError(f"video_max_inflight: must be > 0, got {self.max_inflight}")
        if not self.describe_grace_s >= 0:
            raise ConfigError(f"describe_grace_s: must be >= 0, got {self.describe_grace_s}")


class VideoPool:
    def __init__(self, config: VideoPoolConfig = VideoPoolConfig()) -> None:
        from workers.actor_set import ActorSet

        gpus = config.gpus_per_actor if config.gpus_per_actor is not None else float(config.describer == "vlm")
        self.config = config
        self.policy = config.policy
        self.actors = ActorSet(VideoActor, (config.describer, config.decode, config.options, config.policy),
                               config.actors,
                               dict(num_cpus=config.cpus_per_actor, num_gpus=gpus,
                                    max_concurrency=1), config.ray_address, kind="video actor")
        info = self.actors.first_answers("info", config.startup_timeout_s)[0]
        self.describer: str = info["describer"]
        self.version: str = info["version"]
        self._slots = config.actors * config.max_inflight
        self._free: asyncio.Semaphore | None = None
        # One semaphore per event loop: workers (and their loops) come and go, the pool stays.
        self._idle: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @property
    def segment_timeout_s(self) -> float:
        """How long one segment may hold an actor before the actor is taken as hung."""
        return self.config.policy.video_timeout_s + self.config.describe_grace_s

    def deadline_s(self, segments: int) -> float:
        """How long describing `segments` may take: each actor's share at the segment deadline,
        plus one deadline for a hung actor's replacement."""
        return (math.ceil(segments / self.config.actors) + 1) * self.segment_timeout_s

    async def describe(self, segments: Sequence[VideoSegment]) -> list[DescribeResult]:
        """Describe `segments`, one at a time on each actor; results in order. A segment whose
        actor overran the deadline (replaced) or is gone gets an error result."""
        loop = asyncio.get_running_loop()
        idle = self._idle.get(loop)
        if idle is None:
            idle = self._idle[loop] = asyncio.Semaphore(self.config.actors)

        async def one(segment: VideoSegment) -> DescribeResult:
            async with idle:
                try:
                    answer = await self.actors.call("describe", [segment], timeout_s=self.segment_timeout_s)
                except DialogueLLMError as e:  # hung (replaced) or every actor died
                    return DescribeResult(error=f"describer failed: {e}")
                return answer[0]

        return list(await asyncio.gather(*(one(s) for s in segments)))

    async def decode(self, segments: Sequence[VideoSegment]) -> list[tuple[int, int, str | None]]:
        """Decode only, spread over the actors (see `VideoActor.decode`)."""
        return await self._spread("decode", segments)

    async def _spread(self, method: str, segments: Sequence[VideoSegment]) -> list:
        if not segments:
            return []
        if self._free is None:
            self._free = asyncio.Semaphore(self._slots)
        n = min(len(self.actors.actors), len(segments))
        pieces = [list(segments[i::n]) for i in range(n)]

        async def one(piece: list[VideoSegment]) -> list:
            async with self._free:
                return await self.actors.call(method, piece)

        answers = await asyncio.gather(*(one(p) for p in pieces))
        results: list = [None] * len(segments)
        for i, answer in enumerate(answers):
            results[i::n] = answer
        return results

    def shutdown(self) -> None:
        self.actors.shutdown()
