"""The engine's typed configuration, validated when built (no heavy imports here)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pipeline.core.config_fields import field_help
from pipeline.core.conversation_prompt import PROMPTS
from pipeline.core.errors import ConfigError
from pipeline.core.redaction import RedactionConfig


def decoding_modes() -> tuple[str, ...]:
    """The decoding modes' registry (`workers.decoding.MODES`)."""
    from workers.decoding import MODES

    return tuple(MODES)


DTYPES = ("auto", "float32", "bfloat16", "float16")

PROMPT_DEFAULTS: dict[str, object] = {"prompt": "dialoguellm", "context_turns": 2, "window_step": 8,
                                      "max_model_len": 512}
"""How turns are put to the model when neither the command nor the default adapter's training
(its `dialoguellm_adapter.json`) says: the paper's prompt with two previous turns, in a 512-token
window (the window's budget decides which past turns the conversation prompt shows)."""


def parse_adapter_specs(specs: list[str] | None) -> dict[str, str]:
    """`NAME=PATH` strings (as given on the command line) to a name → path map."""
    adapters: dict[str, str] = {}
    for spec in specs or ():
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"adapter: expected NAME=PATH, got {spec!r}")
        if name.strip() in adapters:
            raise ConfigError(f"adapter: name {name.strip()!r} given twice")
        adapters[name.strip()] = path.strip()
    return adapters


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine needs; the same fields run a 135M model on a CPU or 7B on a GPU.

    `adapters` maps names to PEFT LoRA folders loaded at start; requests pick one by name, or
    the base model with `None`. `default_adapter` is used when a request names none. With the
    default model and no adapters given, the shipped default adapter is served as "default"
    (`use_default_adapter: False` serves the bare model). On a CPU, an engine whose only adapter is
    its default (and `enable_lora` off) serves it merged into the model (`merge_default_adapter`).
    CPU-only fields: `kv_cache_gib`, `cpu_threads` ("all" binds every CPU this process may use,
    else a list such as "0-3"; vLLM alone would keep one core idle for its scheduler) and
    `block_size` (default 32 on CPUs, the smallest their attention kernel takes, so the shared
    instruction fills whole prefix-cache blocks).
    """

    model: str | None = field(default=None, metadata=field_help(
        "model folder, hub id, or a named offline model: default (SmolLM2-135M-Instruct) or gemma-3-270m "
        "(an optional install)"))
    adapters: dict[str, str] = field(default_factory=dict, metadata=field_help(
        "a PEFT LoRA adapter folder as NAME=PATH; repeat for several, the first is the default "
        "(default: the shipped adapter with the default model)", flag="--adapter", parse=parse_adapter_specs,
        metavar="NAME=PATH"))
    default_adapter: str | None = field(default=None, metadata=field_help(
        "the adapter a request naming none gets (default: the first --adapter)"))
    enable_lora: bool = field(default=False, metadata=field_help("allow adapters added while running"))
    use_default_adapter: bool = field(default=True, metadata=field_help(
        "serve the bare model, not the shipped adapter", flag="--no-adapter"))
    merge_default_adapter: bool = field(default=True, metadata=field_help(
        "on a CPU, serve the default adapter through LoRA even when it is the only one, instead of merged into "
        "the model"))
    decoding: str = field(default="scoring", metadata=field_help(
        "scoring: one forward pass over the label tokens; choice: constrained generation", choices=decoding_modes))
    prompt: str | None = field(default=None, metadata=field_help(
        "dialoguellm: the paper's prompt (previous turns, target, response mark); conversation: every turn "
        "up to the target, each a line and a slot, sent as token ids so each turn extends the last one's prompt "
        "(default: as the default adapter was trained, else dialoguellm)", choices=PROMPTS))
    context_turns: int | None = field(default=None, metadata=field_help(
        "previous turns in the prompt (conversation prompt: at most this many, fewer when the window moves) "
        "(default: as the default adapter was trained, else 2)", flag="--context", metavar="Z"))
    window_step: int | None = field(default=None, metadata=field_help(
        "conversation prompt: the window of past turns starts at a multiple of this many turn ids, so it "
        "moves in steps of this size when the history outgrows max_model_len "
        "(default: as the default adapter was trained, else 8)"))
    max_model_len: int | None = field(default=None, metadata=field_help(
        "context window in tokens: prompt and answer (default: as the default adapter was trained, else 512)"))
    max_lora_rank: int = field(default=16, metadata=field_help("the largest LoRA rank served"))
    max_loras: int = 4
    dtype: str = "auto"
    enable_prefix_caching: bool = True
    sort_prompts: bool = True
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    kv_cache_gib: float = field(default=2.0, metadata=field_help("CPU KV cache size in GiB"))
    redact_prompts: bool = field(default=False, metadata=field_help(
        "redact the turns' texts before they go into prompts: card numbers, IBANs, e-mail addresses and phone "
        "numbers become <CARD>, <IBAN>, <EMAIL>, <PHONE> (the model never sees them)"))
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    block_size: int | None = None
    cpu_threads: str = "all"
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    seed: int = 0

    def resolved(self) -> EngineConfig:
        """This config as an engine serves it: the shipped adapter when it applies (default model, no
        adapters), and each prompt setting left unset (`prompt`, `context_turns`, `window_step`,
        `max_model_len`) as the default adapter was trained, else `PROMPT_DEFAULTS`: an adapter is
        served with its own prompt and window."""
        from workers.adapters import read_adapter_meta
        from workers.model_store import DEFAULT_ADAPTER, DEFAULT_MODEL, default_adapter_dir

        config = self
        shipped = default_adapter_dir()
        if self.use_default_adapter and not self.adapters and self.model in (None, "", DEFAULT_MODEL) and shipped:
            config = replace(self, adapters={DEFAULT_ADAPTER: str(shipped)}, default_adapter=DEFAULT_ADAPTER)
        unset = [name for name in PROMPT_DEFAULTS if getattr(config, name) is None]
        if not unset:
            return config
        default = config.default_adapter or next(iter(config.adapters), None)
        meta = read_adapter_meta(config.adapters[default]) if default is not None else None
        trained = {name: getattr(meta, name, None) for name in unset}
        return replace(config, **{name: PROMPT_DEFAULTS[name] if trained[name] is None else trained[name]
                                  for name in unset})

    def alone(self, name: str, path: str | None) -> EngineConfig:
        """This config serving one adapter alone as its default, as `serve` would (merged into the
        model on a CPU), with the prompt it was trained with unless set here; `path` None: the bare model."""
        return replace(self, adapters={name: path} if path else {}, default_adapter=name if path else None,
                       use_default_adapter=False, enable_lora=False).resolved()

    def __post_init__(self) -> None:
        if self.decoding not in decoding_modes():
            raise ConfigError(f"decoding: {self.decoding!r} is not one of {', '.join(decoding_modes())}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype: {self.dtype!r} is not one of {', '.join(DTYPES)}")
        for name in ("max_model_len", "max_lora_rank", "max_loras", "max_num_seqs", "tensor_parallel_size"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.context_turns is not None and self.context_turns < 0:
            raise ConfigError(f"context_turns: must be ≥ 0, got {self.context_turns}")
        if self.prompt is not None and self.prompt not in PROMPTS:
            raise ConfigError(f"prompt: {self.prompt!r} is not one of {', '.join(PROMPTS)}")
        if self.window_step is not None and self.window_step <= 0:
            raise ConfigError(f"window_step: must be > 0, got {self.window_step}")
        if self.block_size is not None and (self.block_size <= 0 or self.block_size % 16):
            raise ConfigError(f"block_size: must be a positive multiple of 16, got {self.block_size}")
        if self.kv_cache_gib <= 0:
            raise ConfigError(f"kv_cache_gib: must be > 0, got {self.kv_cache_gib}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization: must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.default_adapter is not None and self.default_adapter not in self.adapters:
            raise ConfigError(f"default_adapter: {self.default_adapter!r} is not among the adapters "
                              f"({', '.join(self.adapters) or 'none given'})")
