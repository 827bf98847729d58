"""`dialoguellm describe`: one video segment in words, as the prompt gets it."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from pipeline.cli import flags
from pipeline.cli.preflight import preflight
from pipeline.core.errors import VideoError


def describe_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="a video file (its folder is the video root when no --video-root is given), "
                                 "or an http(s) URL under a --video-allow prefix")
    p.add_argument("--start", type=float, required=True, help="seconds")
    p.add_argument("--end", type=float, required=True, help="seconds")
    p.add_argument("--json", action="store_true", help="the description, its cues and timings as JSON")
    flags.video_flags(p)


def run_describe(args: argparse.Namespace) -> int:
    from pipeline.core.turns import VideoSegment
    from workers.video.segment_describer import SegmentDescriber

    video = preflight(args).video
    if video is None:
        raise VideoError("describer: 'none' describes nothing; pick cpu or vlm")
    policy = _command_line_policy(video.policy, args.video)
    source = policy.decide(args.video)
    if not source.allowed:  # said before any model loads: one line, at once
        raise VideoError(source.reason)
    worker = SegmentDescriber(video.describer, video.decode, policy, **video.options)
    result = worker.describe(VideoSegment(args.video, args.start, args.end))
    if result.error:
        raise VideoError(result.error)
    if args.json:
        print(json.dumps({**asdict(result.description), "frames": result.frames,
                          "decode_ms": round(result.decode_s * 1000, 1),
                          "describe_ms": round(result.describe_s * 1000, 1)}))
    else:
        print(result.text)
    return 0


def _command_line_policy(policy, uri: str):
    """The same policy as the workers'; a file named on the command line with no --video-root and
    no --video-allow given has its own folder as the root (never a /proc, /sys or /dev one)."""
    import os
    from dataclasses import replace

    from pipeline.core.video_policy import PSEUDO_FS, local_path

    path = local_path(uri)
    if not policy.opens_nothing or not path or "\0" in path:
        return policy
    folder = os.path.dirname(os.path.realpath(path))
    if any(folder == p or folder.startswith(p + "/") for p in PSEUDO_FS) or not os.path.isdir(folder):
        return policy
    return replace(policy, video_roots=(folder,))
