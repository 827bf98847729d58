"""Measurements shared by the benchmarks: the machine's matmul rate and model FLOPs."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

CONVERSATION_CONTEXT = 64
"""The conversation prompt's context in the benchmarks: every previous turn of a MELD dialogue (the longest has 33)."""


def bench_context_turns(prompt: str) -> int:
    """The context a benchmark gives `prompt`, whatever the default adapter was trained with: the
    paper prompt its z=2, the conversation prompt every previous turn."""
    from workers.engine_config import PROMPT_DEFAULTS

    return CONVERSATION_CONTEXT if prompt == "conversation" else int(PROMPT_DEFAULTS["context_turns"])


def matmul_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """fp32 matrix-product rate of this machine through torch, all cores (GFLOP/s)."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - start) / 1e9


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count of a decoder-only transformer depends on."""

    non_embedding_params: int
    layers: int
    hidden: int
    vocab: int

    @classmethod
    def of(cls, model_dir: str) -> ModelShape:
        from transformers import AutoConfig

        c = AutoConfig.from_pretrained(model_dir)
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        kv = c.num_key_value_heads * head_dim
        attention = c.hidden_size * (2 * c.num_attention_heads * head_dim + 2 * kv)
        mlp = 3 * c.hidden_size * c.intermediate_size
        return cls(c.num_hidden_layers * (attention + mlp), c.num_hidden_layers, c.hidden_size, c.vocab_size)

    def prompt_flops(self, tokens: int) -> float:
        """A forward pass over `tokens` prompt tokens with the vocabulary head on the last one."""
        return (2 * self.non_embedding_params * tokens + 2 * self.layers * tokens**2 * self.hidden
                + 2 * self.hidden * self.vocab)


def log(message: str) -> None:
    """Progress and figures on stderr (stdout keeps the JSON line)."""
    print(message, file=sys.stderr, flush=True)
