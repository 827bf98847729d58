"""The VLM describer on a tiny random Qwen2-VL in vLLM (the CPU build here): frames in, text out.

Runs in a fresh process: vLLM's in-process engine keeps one torch process group per process,
and the session's text engine already holds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SCRIPT = """
import gc, json, sys
from pathlib import Path
from tiny_vlm import build_tiny_qwen2_vl, qwen2_vl_without_torchvision
from pipeline.core.turns import VideoSegment
from pipeline.core.video_policy import VideoPolicy
from workers.video.decoder import DecodeConfig, SegmentDecoder
from workers.video.describers.vlm import VLMConfig, VLMDescriber
from workers.video.synthetic import make_video

tmp, meld = Path(sys.argv[1]), Path(sys.argv[2])
model = build_tiny_qwen2_vl(tmp / "tiny-qwen2-vl", meld)
video = make_video(tmp / "clip.mp4", 2, 25, "libx264", size=(128, 128))
decoder = SegmentDecoder(DecodeConfig(frames=2), VideoPolicy(video_roots=(str(tmp),)))
segments = [decoder.decode(VideoSegment(str(video), 0, 1)), decoder.decode(VideoSegment(str(video), 1, 2))]
with qwen2_vl_without_torchvision():
    describer = VLMDescriber(VLMConfig(model=str(model), max_images=2, max_tokens=8, max_model_len=1024,
                                       dtype="float32"))
    descriptions = describer.describe_many(segments)
print(json.dumps({"model": str(model), "descriptions": [vars(d) for d in descriptions]}))
"""


@pytest.mark.engine
def test_vlm_describes_segments(tmp_path, data_root):
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # the shims act in this process
           "VLLM_LOGGING_LEVEL": "WARNING", "PYTHONPATH": f"{HERE}:{HERE.parent}"}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(data_root / "MELD" / "train_sent_emo.csv")],
                         capture_output=True, text=True, timeout=600, env=env, cwd=HERE.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(out["descriptions"]) == 2
    for d in out["descriptions"]:
        assert d["describer"] == "vlm"
        assert d["version"].startswith(out["model"])
        assert d["cues"]["frames"] == 2
        assert isinstance(d["text"], str)
