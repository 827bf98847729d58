"""`dialoguellm bench video`: our segment decoder in Ray actors against plain PyAV, same segments, one run.

The clips are made here with PyAV (a real photograph, `skimage.data.astronaut()`, drifting
across 640×480 H.264 at 30 fps, a keyframe a second), cut into back-to-back segments of
`segment_s` seconds, the length of an utterance.
(a) plain PyAV: open, seek to the segment's start, decode every frame to its end, in this process;
(b) our decoder (seek, slice-threaded decoding skipping B-frames, 8 frames sampled and converted
    to RGB) in 1 video actor, then in 2;
frames/s is the video covered (the segments' frames) per second, the same numerator for both;
(c) the `cpu` describer's time per segment, from the actors' own timings.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.benchmarks.common import log
from pipeline.core.turns import VideoSegment
from pipeline.core.video_policy import VideoPolicy


def make_clips(folder: Path, clips: int, seconds: float) -> list[Path]:
    from skimage import data

    from workers.video.synthetic import make_video

    return [make_video(folder / f"clip{i}.mp4", seconds, 30, "libx264", size=(640, 480), image=data.astronaut(),
                       gop=30) for i in range(clips)]


def plain_pyav(segments: list[VideoSegment]) -> int:
    """The baseline: every frame of each segment decoded with PyAV's defaults; returns frames decoded."""
    import av

    decoded = 0
    for s in segments:
        with av.open(s.uri) as container:
            stream = container.streams.video[0]
            container.seek(int(s.start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time < s.start:
                    continue
                if frame.time >= s.end:
                    break
                decoded += 1
    return decoded


def run_video_benchmark(clips: int = 4, clip_s: float = 30.0, segment_s: float = 3.0,
                        workdir: str | None = None) -> dict[str, Any]:
    from workers.video.actors import VideoPool, VideoPoolConfig

    folder = Path(tempfile.mkdtemp(prefix="dialoguellm-bench-video-", dir=workdir))
    paths = make_clips(folder, clips, clip_s)
    segments = [VideoSegment(str(p), i * segment_s, (i + 1) * segment_s)
                for p in paths for i in range(int(clip_s // segment_s))]
    log(f"bench video: {len(segments)} segments of {segment_s:.0f} s from {clips} clips of {clip_s:.0f} s "
         "(640x480 H.264, 30 fps)")
    plain_pyav(segments[:2])
    start = time.perf_counter()
    frames = plain_pyav(segments)
    baseline = time.perf_counter() - start
    result: dict[str, Any] = {"segments": len(segments), "frames_decoded": frames,
                              "pyav_segments_per_s": round(len(segments) / baseline, 2),
                              "pyav_frames_per_s": round(frames / baseline, 1)}
    log(f"  (a) plain PyAV, this process: {len(segments) / baseline:.2f} segments/s, {frames / baseline:.0f} frames/s")
    for actors in (1, 2):
        pool = VideoPool(VideoPoolConfig("cpu", actors=actors, policy=VideoPolicy(video_roots=(str(folder),))))
        try:
            asyncio.run(pool.decode(segments[:2 * actors]))
            start = time.perf_counter()
            decoded = asyncio.run(pool.decode(segments))
            took = time.perf_counter() - start
            if actors == 1:
                described = asyncio.run(pool.describe(segments[:8]))
        finally:
            pool.shutdown()
        ours = sum(d for _, d, _ in decoded)
        result[f"actors_{actors}_segments_per_s"] = round(len(segments) / took, 2)
        result[f"actors_{actors}_frames_per_s"] = round(frames / took, 1)
        result[f"actors_{actors}_frames_decoded"] = ours
        log(f"  (b) our decoder, {actors} actor(s): {len(segments) / took:.2f} segments/s, {frames / took:.0f} "
             f"frames/s of video covered ({ours} of its {frames} frames decoded) = {baseline / took:.2f}x (a)")
    result["ratio_1_actor"] = round(result["actors_1_segments_per_s"] / result["pyav_segments_per_s"], 3)
    result["gain_2_actors"] = round(result["actors_2_segments_per_s"] / result["actors_1_segments_per_s"], 3)
    ok = [d for d in described if d.description]
    result["describe_ms_per_segment"] = round(1000 * sum(d.describe_s for d in ok) / max(1, len(ok)), 1)
    result["decode_ms_per_segment"] = round(1000 * sum(d.decode_s for d in ok) / max(1, len(ok)), 1)
    log(f"  (c) cpu describer: {result['describe_ms_per_segment']:.0f} ms a segment (8 frames), after "
         f"{result['decode_ms_per_segment']:.0f} ms decoding; e.g. \"{ok[0].text if ok else '-'}\"")
    log(f"  2 actors / 1 actor: {result['gain_2_actors']:.2f}x")
    return result
