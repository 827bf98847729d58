"""Videos made with PyAV for tests and benchmarks: a picture (or a moving pattern), any codec and
frame rate, optionally variable frame rate, with or without an audio track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any


def make_video(path: str | Path, seconds: float = 2.0, fps: int = 25, codec: str = "mpeg4",
               size: tuple[int, int] = (320, 240), image: Any = None, audio: bool = False,
               variable_rate: bool = False, gop: int = 12) -> Path:
    """Write a video to `path`: `image` (H×W×3 RGB) drifting across the frame, else a pattern.

    `variable_rate` spaces frames alternately 1/fps and 2/fps apart (timestamps, not duplicates).
    """
    import av
    import numpy as np

    width, height = size
    path = Path(path)
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = gop
        sound = out.add_stream("aac", rate=16000) if audio else None
        base = _canvas(image, width, height)
        pts = 0
        for i in range(int(seconds * fps)):
            if pts >= seconds * fps:
                break
            shift = (i * 3) % max(1, width // 4)
            frame = av.VideoFrame.from_ndarray(np.roll(base, shift, axis=1), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, fps)
            pts += 1 + (i % 2) if variable_rate else 1
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            _write_tone(out, sound, seconds)
    return path


def _canvas(image: Any, width: int, height: int) -> Any:
    import numpy as np

    if image is None:
        y, x = np.mgrid[0:height, 0:width]
        return np.stack([(x * 255 // width), (y * 255 // height), ((x + y) % 256)], axis=-1).astype(np.uint8)
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[..., :3]), format="rgb24")
    return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()


def _write_tone(out: Any, sound: Any, seconds: float) -> None:
    import av
    import numpy as np

    rate, chunk = 16000, 1024
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for start in range(0, len(samples), chunk):
        frame = av.AudioFrame.from_ndarray(samples[None, start:start + chunk], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        out.mux(sound.encode(frame))
    out.mux(sound.encode())


def truncate(path: str | Path, keep: float = 0.5) -> Path:
    """Cut a file to its first `keep` share of bytes (a download or copy that stopped)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
