"""`dialoguellm describe`, and the video flags the serving commands share."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from pipeline.errors import VideoError


def video_arguments(p: argparse.ArgumentParser, default: str = "cpu") -> None:
    g = p.add_argument_group("video")
    g.add_argument("--describer", choices=("cpu", "vlm", "none"), default=default,
                   help="how a turn's video becomes words (default: %(default)s)")
    g.add_argument("--frames", type=int, default=8, help="frames sampled per segment")
    g.add_argument("--sampling", choices=("uniform", "keyframes"), default="uniform",
                   help="frames evenly over the segment, or its keyframes only")
    g.add_argument("--vlm-model", default="Qwen/Qwen2.5-VL-7B-Instruct", help="the vlm describer's model")


def decode_config(args: argparse.Namespace):
    from workers.video.decoder import DecodeConfig

    return DecodeConfig(frames=args.frames, mode=args.sampling)


def describer_options(args: argparse.Namespace) -> dict:
    return {"model": args.vlm_model} if args.describer == "vlm" else {}


def start_video_pool(args: argparse.Namespace, actors: int = 1):
    """The video actors for `args.describer`, or None for `none`."""
    if args.describer == "none":
        return None
    from workers.video.actors import VideoPool, VideoPoolConfig

    return VideoPool(VideoPoolConfig(args.describer, actors, decode=decode_config(args),
                                     options=describer_options(args),
                                     ray_address=getattr(args, "ray_address", None)))


def _describe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("describe", help="describe a video segment in words (as the prompt gets it)")
    p.add_argument("video", help="a video file or any URL FFmpeg reads")
    p.add_argument("--start", type=float, required=True, help="seconds")
    p.add_argument("--end", type=float, required=True, help="seconds")
    p.add_argument("--json", action="store_true", help="the description, its cues and timings as JSON")
    video_arguments(p)
    p.set_defaults(run=run_describe)


def run_describe(args: argparse.Namespace) -> int:
    from pipeline.turns import VideoSegment
    from workers.video.segment_describer import SegmentDescriber

    if args.describer == "none":
        raise VideoError("describer: 'none' describes nothing; pick cpu or vlm")
    worker = SegmentDescriber(args.describer, decode_config(args), **describer_options(args))
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


REGISTRY = (_describe,)
