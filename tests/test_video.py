"""Video decoding and describing on videos generated with PyAV at test time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.core.errors import ConfigError, VideoError
from pipeline.core.turns import VideoSegment
from pipeline.core.video_policy import VideoPolicy
from workers.video.decoder import DecodeConfig, SegmentDecoder
from workers.video.synthetic import make_video, truncate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    import av

    folder = tmp_path_factory.mktemp("videos")
    made = {
        "mpeg4-25": make_video(folder / "mpeg4-25.mp4", 3, 25, "mpeg4"),
        "h264-30": make_video(folder / "h264-30.mp4", 3, 30, "libx264"),
        "h264-60": make_video(folder / "h264-60.mkv", 3, 60, "libx264"),
        "mpeg4-15-audio": make_video(folder / "mpeg4-15-audio.mp4", 3, 15, "mpeg4", audio=True),
        "h264-vfr": make_video(folder / "h264-vfr.mkv", 3, 30, "libx264", variable_rate=True),
        "raw-h264": make_video(folder / "raw.h264", 3, 25, "libx264"),
    }
    made["truncated-mp4"] = truncate(shutil.copy(made["h264-30"], folder / "truncated.mp4"))
    made["truncated-mkv"] = truncate(shutil.copy(made["h264-60"], folder / "truncated.mkv"))
    with av.open(str(folder / "audio-only.m4a"), "w") as out:
        from workers.video.synthetic import _write_tone

        _write_tone(out, out.add_stream("aac", rate=16000), 1.0)
    made["audio-only"] = folder / "audio-only.m4a"
    (folder / "garbage.mp4").write_bytes(b"not a video at all " * 100)
    made["garbage"] = folder / "garbage.mp4"
    return made


def under(path) -> VideoPolicy:
    """The policy that opens files in `path`'s folder."""
    return VideoPolicy(video_roots=(str(Path(path).parent),))


def decode(path, start, end, **config):
    return SegmentDecoder(DecodeConfig(**config), under(path)).decode(VideoSegment(str(path), start, end))


@pytest.mark.parametrize("name, fps", [("mpeg4-25", 25), ("h264-30", 30), ("h264-60", 60), ("mpeg4-15-audio", 15),
                                       ("h264-vfr", 30)])
def test_a_segment_gives_frames_spread_over_it(videos, name, fps):
    result = decode(videos[name], 0.5, 2.0, frames=4, max_side=160)
    assert len(result.frames) == 4 and result.damaged is None
    assert all(0.5 <= t < 2.0 for t in result.times) and result.times == sorted(result.times)
    # Evenly spread: one frame near each of 0.69, 1.06, 1.44, 1.81 s (within a frame or two).
    for t, target in zip(result.times, (0.6875, 1.0625, 1.4375, 1.8125)):
        assert abs(t - target) <= 2.01 / fps
    assert result.frames[0].shape == (120, 160, 3) and result.frames[0].dtype.name == "uint8"


def test_frames_without_timestamps_are_timed_by_their_rate(videos):
    result = decode(videos["raw-h264"], 1.0, 2.0, frames=2)
    assert result.times == [1.24, 1.76]  # frame 31 and 44 at 25 fps: by index, from the file's start


def test_keyframes_mode_decodes_only_keyframes(videos):
    result = decode(videos["mpeg4-25"], 0.0, 3.0, frames=10, mode="keyframes")
    assert result.times == [0.0, 0.48, 0.96, 1.44, 1.92, 2.4, 2.88]  # a keyframe every 12 frames
    assert result.decoded == 7


def test_a_segment_past_the_end_is_sampled_over_what_exists(videos):
    result = decode(videos["h264-30"], 2.5, 10.0, frames=3)
    assert len(result.frames) == 3 and all(2.5 <= t < 3.0 for t in result.times)


@pytest.mark.parametrize("name, start, end, reason", [
    ("h264-30", 5.0, 6.0, "segment starts at 5.0s, after the video's last frame (2.97s)"),
    ("mpeg4-25", 1.0, 1.0, "zero-length segment (1.0s to 1.0s)"),
    ("mpeg4-25", 2.0, 1.0, "zero-length segment (2.0s to 1.0s)"),
    ("audio-only", 0.0, 1.0, "no video stream in "),
    ("garbage", 0.0, 1.0, "cannot open "),
    ("truncated-mp4", 0.0, 1.0, "cannot open "),  # its index (moov) was at the end
    ("truncated-mkv", 2.0, 3.0, "segment starts at 2.0s, after the video's last frame"),
])
def test_a_bad_segment_gives_a_clear_error(videos, name, start, end, reason):
    with pytest.raises(VideoError) as e:
        decode(videos[name], start, end)
    assert reason in str(e.value)


def test_a_truncated_file_keeps_the_frames_before_the_cut(videos):
    result = decode(videos["truncated-mkv"], 0.2, 1.0, frames=3)
    assert len(result.frames) == 3


def test_a_missing_file_gives_a_clear_error(tmp_path):
    with pytest.raises(VideoError, match="cannot open .*nowhere.mp4"):
        decode(tmp_path / "nowhere.mp4", 0, 1)


def test_a_bad_decode_config_names_its_field():
    with pytest.raises(ConfigError, match="^frames"):
        DecodeConfig(frames=0)
    with pytest.raises(ConfigError, match="^sampling"):
        DecodeConfig(mode="every-other")


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory) -> Path:
    from skimage import data

    return make_video(tmp_path_factory.mktemp("astronaut") / "astronaut.mp4", 2, 25, "libx264",
                      size=(512, 512), image=data.astronaut())


def test_the_cpu_describer_reads_a_real_face(astronaut_video):
    from workers.video.segment_describer import SegmentDescriber

    result = SegmentDescriber("cpu", policy=under(astronaut_video)).describe(
        VideoSegment(str(astronaut_video), 0.2, 1.8))
    assert result.error is None
    cues = result.description.cues
    assert cues["faces"] == 1 and cues["frames_with_face"] == 8
    assert cues["expression"] == "happy" and cues["expression_probs"]["happy"] > 0.9
    assert result.text.startswith("One person faces the camera, smiling (happy")
    assert result.description.describer == "cpu" and result.description.version.startswith("haar-fer-1-")


def test_no_face_is_said_plainly(videos):
    from workers.video.segment_describer import SegmentDescriber

    result = SegmentDescriber("cpu", policy=under(videos["mpeg4-25"])).describe(
        VideoSegment(str(videos["mpeg4-25"]), 0, 1))
    assert result.description.cues["faces"] == 0 and result.text.startswith("No face is visible;")


def test_a_broken_video_gives_an_error_result_not_an_exception(videos):
    from workers.video.segment_describer import SegmentDescriber

    result = SegmentDescriber("cpu", policy=under(videos["garbage"])).describe(
        VideoSegment(str(videos["garbage"]), 0, 1))
    assert result.description is None and result.error.startswith("cannot open ")


def test_describe_command_prints_the_description(run_cli, astronaut_video):
    import json

    ok = run_cli("describe", str(astronaut_video), "--start", "0", "--end", "1.5", "--json")
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout.strip().splitlines()[-1])
    assert out["cues"]["expression"] == "happy" and out["frames"] == 8 and out["describer"] == "cpu"
    bad = run_cli("describe", str(astronaut_video), "--start", "9", "--end", "10")
    assert bad.returncode == 2 and "after the video's last frame" in bad.stderr.splitlines()[-1]


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"]).returncode == 0


@pytest.mark.skipif(not _can_unshare() or shutil.which("strace") is None,
                    reason="needs `unshare -n` (root or user namespaces) and strace")
def test_the_cpu_describer_opens_no_network_connection(astronaut_video):
    """In a namespace with no network, and with every connect() traced: only local sockets."""
    trace = astronaut_video.parent / "connect.trace"
    cmd = ["unshare", "-n", "strace", "-f", "-qq", "-e", "trace=connect,sendto", "-o", str(trace),
           sys.executable, "-m", "pipeline.cli", "describe", str(astronaut_video), "--start", "0", "--end", "1.5"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "smiling" in result.stdout
    calls = trace.read_text()
    assert "AF_INET" not in calls and "AF_INET6" not in calls, calls[:2000]


def test_description_caches_key_on_content_bounds_and_describer(tmp_path, astronaut_video):
    from pipeline.core.description_cache import DiskDescriptionCache, cache_key
    from pipeline.core.descriptions import Description

    copy = Path(shutil.copy(astronaut_video, tmp_path / "clip.mp4"))
    segment = VideoSegment(str(copy), 0.0, 1.0)
    key = cache_key(segment, "cpu", "v1")
    assert key == cache_key(VideoSegment(str(copy), 0.0, 1.0), "cpu", "v1")
    assert len({key, cache_key(VideoSegment(str(copy), 0.0, 1.5), "cpu", "v1"), cache_key(segment, "cpu", "v2"),
                cache_key(segment, "vlm", "v1")}) == 4
    cache = DiskDescriptionCache(tmp_path / "cache")
    assert cache.get(key) is None
    cache.put(key, Description("A face.", {"faces": 1}, "cpu", "v1"))
    assert cache.get(key) == Description("A face.", {"faces": 1}, "cpu", "v1")
    time.sleep(0.01)
    copy.write_bytes(copy.read_bytes() + b"\0")  # the file changed in place: a new key
    assert cache_key(segment, "cpu", "v1") != key


@pytest.mark.engine
def test_video_actors_describe_a_batch_in_order(videos, astronaut_video):
    import asyncio

    from workers.video.actors import VideoPool, VideoPoolConfig

    # Half a CPU each: the session's engine actor holds one of Ray's two here.
    policy = VideoPolicy(video_roots=(str(astronaut_video.parent), str(videos["garbage"].parent)))
    pool = VideoPool(VideoPoolConfig("cpu", actors=2, decode=DecodeConfig(frames=4), cpus_per_actor=0.5,
                                     policy=policy))
    try:
        segments = [VideoSegment(str(astronaut_video), 0, 1), VideoSegment(str(videos["garbage"]), 0, 1),
                    VideoSegment(str(videos["mpeg4-25"]), 0, 1), VideoSegment(str(astronaut_video), 1, 1)]
        results = asyncio.run(pool.describe(segments))
    finally:
        pool.shutdown()
    assert results[0].description.cues["expression"] == "happy"
    assert results[1].error.startswith("cannot open ")
    assert results[2].text.startswith("No face is visible")
    assert results[3].error.startswith("zero-length segment")
