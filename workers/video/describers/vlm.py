"""`vlm`: a vision-language model (default Qwen2.5-VL-7B-Instruct) describes the sampled frames
through vLLM's multimodal input, asked like the paper's expert prompt for expression, gaze,
gestures, posture and scene. Meant for GPU actors; weights come from a local folder or the hub.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pipeline.core.descriptions import Description
from pipeline.core.errors import ConfigError
from workers.cpu_threads import bind_cpu_threads
from workers.video.decoder import SegmentFrames

PROMPT = (
    "You are an expert in non-verbal communication. These frames come from one utterance of a "
    "conversation, in time order. In two or three sentences, describe the speaker's facial "
    "expression, gaze, gestures and body posture, and the scene. Describe only what is visible; "
    "do not guess the words."
)

# On vLLM's CPU build (as workers/engine.py): a fixed KV cache instead of a memory fraction,
# 32-token blocks, no graph capture, and compute on every core of this process.
_CPU_KV_CACHE_BYTES = 1 << 30
_CPU_BLOCK_SIZE = 32


@dataclass(frozen=True)
class VLMConfig:
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    max_images: int = 8
    max_tokens: int = 96
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.85
    dtype: str = "auto"
    prompt: str = PROMPT

    def __post_init__(self) -> None:
        if self.max_images <= 0:
            raise ConfigError(f"max_images: must be > 0, got {self.max_images}")
        if self.max_tokens <= 0:
            raise ConfigError(f"max_tokens: must be > 0, got {self.max_tokens}")


class VLMDescriber:
    name = "vlm"

    def __init__(self, config: VLMConfig = VLMConfig()) -> None:
        from vllm import LLM
        from vllm.platforms import current_platform

        self.config = config
        prompt_id = hashlib.sha256(config.prompt.encode()).hexdigest()[:8]
        self.version = f"{config.model}|{prompt_id}|t{config.max_tokens}"
        kwargs: dict[str, Any] = dict(model=config.model, max_model_len=config.max_model_len, dtype=config.dtype,
                                      limit_mm_per_prompt={"image": config.max_images, "video": 0})
        if current_platform.is_cpu():
            kwargs.update(kv_cache_memory_bytes=_CPU_KV_CACHE_BYTES, block_size=_CPU_BLOCK_SIZE, enforce_eager=True)
            bind_cpu_threads("all")
        else:
            kwargs.update(gpu_memory_utilization=config.gpu_memory_utilization)
        self.llm = LLM(**kwargs)

    def describe(self, frames: SegmentFrames) -> Description:
        return self.describe_many([frames])[0]

    def describe_many(self, segments: list[SegmentFrames]) -> list[Description]:
        """One batched generation for several segments."""
        from vllm import SamplingParams

        conversations = [self._messages(s) for s in segments]
        outputs = self.llm.chat(conversations, SamplingParams(max_tokens=self.config.max_tokens, temperature=0),
                                use_tqdm=False)
        return [Description(o.outputs[0].text.strip(), {"frames": len(s.frames)}, self.name, self.version)
                for o, s in zip(outputs, segments)]

    def _messages(self, segment: SegmentFrames) -> list[dict[str, Any]]:
        from PIL import Image

        step = max(1, len(segment.frames) // self.config.max_images)
        images = [Image.fromarray(f) for f in segment.frames[::step][: self.config.max_images]]
        content = [{"type": "image_pil", "image_pil": image} for image in images]
        content.append({"type": "text", "text": self.config.prompt})
        return [{"role": "user", "content": content}]
