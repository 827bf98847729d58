"""`EngineActor`: one `EmotionEngine` in a Ray actor, the unit of the GPU (or CPU) engine pool.

Async, so it answers `info` and `queued` while a batch computes: the engine runs in one thread
of its own, one batch at a time, and batches queue in front of it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pipeline.core.errors import DialogueLLMError
from pipeline.core.predictions import LabelRequest, Prediction
from pipeline.core.turns import Turn
from workers.cpu_threads import torch_threads_for_cpu_actor
from workers.engine_config import EngineConfig

PROBE = LabelRequest(Turn("health-check", 0, "A", "Hello."), (), "meld")
RECENT_CONVERSATIONS = 10_000


@dataclass(frozen=True)
class LabelledBatch:
    """A batch's answers, and its prompt tokens: all of them, and those the prefix cache served."""

    predictions: list[Prediction | DialogueLLMError]
    prompt_tokens: int
    cached_tokens: int


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class EngineActor:
    """Holds the engine; made a Ray actor by `EnginePool` (no Ray import needed here)."""

    def __init__(self, config: EngineConfig) -> None:
        torch_threads_for_cpu_actor()
        from workers.engine import EmotionEngine

        self.engine = EmotionEngine(config)
        self.engine.warm_up()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._queued = 0
        self._conversations: dict[str, None] = {}  # insertion-ordered: the most recent last

    async def info(self) -> dict:
        """What this engine serves: the model, its adapters and the default one."""
        return {"model": self.engine.model, "adapters": list(self.engine.adapters),
                "default_adapter": self.engine.adapter_name(None), "merged": self.engine.merged,
                "lora": self.engine.lora_enabled, "cpu": _on_cpu(), "pid": os.getpid()}

    async def prepare_merged(self, adapter_path: str) -> str:
        """Build the model merged with `adapter_path` into the model cache, beside the engine's work
        (a thread of its own): an engine restarted to serve it merged then finds it ready."""
        from workers.merged_model import merged_model_dir

        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="merge") as pool:
            return str(await loop.run_in_executor(pool, merged_model_dir, self.engine.model, adapter_path))

    async def serve(self, adapters: dict[str, str], default: str | None) -> dict:
        """Serve exactly `adapters` (name -> folder) with `default`: new ones loaded, the default
        set, the rest removed. On the engine's thread, so it runs between batches, never during one."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._serve, dict(adapters), default)
        return await self.info()

    def _serve(self, adapters: dict[str, str], default: str | None) -> None:
        engine = self.engine
        for name, path in adapters.items():
            if name not in engine.adapters:
                engine.add_adapter(name, path)
        engine.set_default(default)
        for name in [n for n in engine.adapters if n not in adapters]:
            engine.remove_adapter(name)

    async def label(self, requests: Sequence[LabelRequest]) -> LabelledBatch:
        """Label a batch (see `EmotionEngine.predict_each`), with its prompt tokens and how many of
        them the prefix cache served."""
        self._queued += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._label, list(requests))
        finally:
            self._queued -= 1

    def _label(self, requests: list[LabelRequest]) -> LabelledBatch:
        stats = self.engine.stats
        before = stats.prompt_tokens, stats.cached_tokens
        predictions = self.engine.predict_each(requests)
        self._conversations.update(dict.fromkeys(r.turn.conversation_id for r in requests))
        while len(self._conversations) > RECENT_CONVERSATIONS:
            self._conversations.pop(next(iter(self._conversations)))
        return LabelledBatch(predictions, stats.prompt_tokens - before[0], stats.cached_tokens - before[1])

    async def conversations(self) -> list[str]:
        """The conversations this engine labelled lately (whose prefixes its cache may hold), oldest first."""
        return list(self._conversations)

    async def health(self) -> bool:
        """Label one probe turn on the engine's thread (queued behind any batch in it): an engine
        left broken by an error hangs or raises here."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self.engine.predict_each, [PROBE])
        return True

    async def reset_prefix_cache(self) -> None:
        """Forget cached prompt prefixes (benchmarks measure each run from a cold cache)."""
        self.engine.llm.reset_prefix_cache()

    async def queued(self) -> int:
        """Batches waiting for or in the engine."""
        return self._queued
