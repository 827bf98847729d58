"""`dialoguellm describe`: one video segment in words, as the prompt gets it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace

from pipeline.cli.configs import DescribeConfig
from pipeline.core.errors import VideoError
from pipeline.core.video_policy import PSEUDO_FS, VideoPolicy, local_path


def run_describe(config: DescribeConfig) -> int:
    from pipeline.core.turns import VideoSegment
    from workers.video.segment_describer import SegmentDescriber

    video = config.video
    policy = _command_line_policy(video.policy, config.uri)
    source = policy.decide(config.uri)
    if not source.allowed:  # said before any model loads: one line, at once
        raise VideoError(source.reason)
    worker = SegmentDescriber(video.describer, video.decode, policy, **video.options)
    result = worker.describe(VideoSegment(config.uri, config.start, config.end))
    if result.error:
        raise VideoError(result.error)
    if config.json:
        print(json.dumps({**asdict(result.description), "frames": result.frames,
                          "decode_ms": round(result.decode_s * 1000, 1),
                          "describe_ms": round(result.describe_s * 1000, 1)}))
    else:
        print(result.text)
    return 0


def _command_line_policy(policy: VideoPolicy, uri: str) -> VideoPolicy:
    """The same policy as the workers'; a file named on the command line with no --video-root and
    no --video-allow given has its own folder as the root (never a /proc, /sys or /dev one)."""
    path = local_path(uri)
    if not policy.opens_nothing or not path or "\0" in path:
        return policy
    folder = os.path.dirname(os.path.realpath(path))
    if any(folder == p or folder.startswith(p + "/") for p in PSEUDO_FS) or not os.path.isdir(folder):
        return policy
    return replace(policy, video_roots=(folder,))
