"""`dialoguellm describe`: one video segment in words, as the prompt gets it."""

from __future__ import annotations

import json
from dataclasses import asdict

from pipeline.cli.configs import DescribeConfig
from pipeline.core.errors import VideoError


def run_describe(config: DescribeConfig) -> int:
    from pipeline.core.turns import VideoSegment
    from workers.video.segment_describer import SegmentDescriber

    video = config.video
    worker = SegmentDescriber(video.describer, video.decode, **video.options)
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
