"""`dialoguellm describe`: one video segment in words, as the prompt gets it."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from pipeline.cli import flags
from pipeline.cli.preflight import preflight
from pipeline.core.errors import VideoError


def describe_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="a video file or any URL FFmpeg reads")
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
    worker = SegmentDescriber(video.describer, video.decode, **video.options)
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
