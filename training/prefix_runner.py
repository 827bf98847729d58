"""The fast training forward pass: a shared prefix computed once per batch, frozen layers once per example.

Every prompt of a label set starts with the same instruction. `PrefixRunner` runs that prefix once
per batch (with gradients, since LoRA changes its keys and values), repeats its KV cache across
the batch and runs only the examples' own tokens after it. With LoRA on the top layers only, the
frozen layers below are the same function every epoch: their outputs are computed once per example
(`lower_states`) and each step starts from them. The result is the same computation as the plain
padded forward pass; `tests/test_fast_training.py` checks loss and gradients against it.

Decoder layers are called directly (as `LlamaModel.forward` does), so this covers the Llama-style
architectures (Llama, Mistral, Qwen2/3, SmolLM2) and Gemma 3, whose layers differ by type
(`config.layer_types`): each type gets its own rotary embedding, and a `sliding_attention` layer
sees only the keys less than `config.sliding_window` positions back; `supports_fast_path` tells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FAST_PATH_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")


def supports_fast_path(model_type: str) -> bool:
    return model_type in FAST_PATH_MODEL_TYPES


@dataclass
class PrefixState:
    """A label set's instruction prefix as the trainable layers receive it (no gradients)."""

    ids: tuple[int, ...]
    hidden: Any  # (1, P, H): the prefix's hidden states entering layer `split`
    lower_cache: Any  # the frozen layers' KV cache for the prefix (None when split == 0)


class PrefixRunner:
    """Forward passes of a PEFT-wrapped causal LM split at layer `split` (0: every layer trains)."""

    def __init__(self, peft_model: Any, split: int = 0) -> None:
        base = peft_model.get_base_model()
        self.decoder = base.model
        self.lm_head = base.get_output_embeddings()
        self.config = base.config
        self.layers = self.decoder.layers
        if not 0 <= split < len(self.layers):
            raise ValueError(f"split must be in [0, {len(self.layers)}), got {split}")
        self.split = split

    @property
    def dtype(self) -> Any:
        return self.lm_head.weight.dtype

    @property
    def device(self) -> Any:
        return self.lm_head.weight.device

    def prefix_state(self, prefix_ids: Sequence[int]) -> PrefixState:
        """Run the frozen layers over a prefix once; reused by every batch of its label set."""
        import torch

        with torch.no_grad():
            ids = torch.tensor([list(prefix_ids)], device=self.device)
            hidden = self.decoder.embed_tokens(ids)
            cache = None
            if self.split:
                cache = self._new_cache()
                hidden = self._run(hidden, 0, self.split, cache, past=0, key_valid=None)
        return PrefixState(tuple(prefix_ids), hidden, cache)

    def lower_states(self, prefix: PrefixState, suffixes: Sequence[Sequence[int]]) -> list[Any]:
        """Each suffix's hidden states entering layer `split` (S_i, H), computed without gradients."""
        import torch

        with torch.no_grad():
            ids, valid = self._pad(suffixes)
            hidden = self.decoder.embed_tokens(ids)
            if self.split:
                cache = _repeated(prefix.lower_cache, len(suffixes))
                hidden = self._run(hidden, 0, self.split, cache, past=len(prefix.ids), key_valid=valid)
        return [hidden[i, : len(s)].clone() for i, s in enumerate(suffixes)]

    def forward(self, prefix: PrefixState, inputs: Sequence[Any]) -> Any:
        """Final-norm hidden states (B, S, H) of the suffixes, from their inputs at layer `split`.

        The prefix runs through the trainable layers once, with gradients; its cache is then
        repeated across the batch. Suffixes are right-padded; padded positions are garbage.
        """
        import torch

        cache = self._new_cache()
        self._run(prefix.hidden, self.split, len(self.layers), cache, past=0, key_valid=None)
        cache.batch_repeat_interleave(len(inputs))
        width = max(x.shape[0] for x in inputs)
        hidden = torch.zeros(len(inputs), width, inputs[0].shape[-1], dtype=self.dtype, device=self.device)
        valid = torch.zeros(len(inputs), width, dtype=torch.bool, device=self.device)
        for i, x in enumerate(inputs):
            hidden[i, : x.shape[0]] = x
            valid[i, : x.shape[0]] = True
        out = self._run(hidden, self.split, len(self.layers), cache, past=len(prefix.ids), key_valid=valid)
        return self.decoder.norm(out)

    def input_states(self, suffixes: Sequence[Sequence[int]]) -> list[Any]:
        """Token embeddings of the suffixes: the inputs of `forward` when every layer trains."""
        import torch

        ids, _ = self._pad(suffixes)
        with torch.no_grad():
            hidden = self.decoder.embed_tokens(ids)
        return [hidden[i, : len(s)] for i, s in enumerate(suffixes)]

    def _pad(self, suffixes: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(s) for s in suffixes)
        ids = torch.zeros(len(suffixes), width, dtype=torch.long, device=self.device)
        valid = torch.zeros(len(suffixes), width, dtype=torch.bool, device=self.device)
        for i, s in enumerate(suffixes):
            ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
            valid[i, : len(s)] = True
        return ids, valid

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        # Every layer keeps all its keys (a config would make sliding layers drop old ones): the masks
        # of `_run` apply the windows.
        return DynamicCache()

    def _run(self, hidden: Any, first: int, last: int, cache: Any, past: int, key_valid: Any,
             allowed: Any = None, positions: Any = None) -> Any:
        """Layers [first, last) over `hidden` (B, S, H) at positions past..past+S-1, after `past`
        cached positions (all valid); `key_valid` (B, S) marks real tokens (None: all real).

        `allowed` (B, S, S), when given, says which of the new tokens each new token attends to
        (instead of causal order and `key_valid`), and `positions` (B, S) their position ids:
        the conversation step appends label-extension tokens that see only their own turn's prompt.
        """
        import torch

        batch, length = hidden.shape[:2]
        if positions is None:
            positions = torch.arange(past, past + length, device=hidden.device).unsqueeze(0)
        if allowed is None:
            causal = torch.ones(length, length, dtype=torch.bool, device=hidden.device).tril()
            allowed = causal.unsqueeze(0).expand(batch, length, length)
            if key_valid is not None:
                allowed = allowed & key_valid.unsqueeze(1)
        if past:
            allowed = torch.cat([allowed.new_ones(batch, length, past), allowed], dim=-1)
        masks = self._masks(allowed, positions, past, first, last, hidden.dtype)
        rotary = self._rotary(hidden, positions, first, last)
        for i in range(first, last):
            hidden = self.layers[i](hidden, attention_mask=masks[i], position_ids=positions, past_key_values=cache,
                                    use_cache=True, position_embeddings=rotary[i])
        return hidden

    def _layer_type(self, index: int) -> str:
        types = getattr(self.config, "layer_types", None)
        return types[index] if types else "full_attention"

    def _masks(self, allowed: Any, positions: Any, past: int, first: int, last: int, dtype: Any) -> dict[int, Any]:
        """Each layer's additive (B, 1, S, past + S) mask: `allowed`, and for a sliding-window layer only
        the keys less than `sliding_window` positions before the query (the cached prefix is at 0..past-1)."""
        import torch

        def additive(pattern: Any) -> Any:
            mask = torch.zeros(pattern.shape, dtype=dtype, device=pattern.device)
            mask.masked_fill_(~pattern, torch.finfo(dtype).min)
            return mask.unsqueeze(1)

        full = additive(allowed)
        window = getattr(self.config, "sliding_window", None)
        sliding = [i for i in range(first, last) if self._layer_type(i) == "sliding_attention"]
        windowed = full
        if sliding and window:
            keys = torch.cat([torch.arange(past, device=positions.device).expand(positions.shape[0], past),
                              positions], dim=-1)
            windowed = additive(allowed & (positions.unsqueeze(-1) - keys.unsqueeze(1) < window))
        return {i: windowed if i in sliding else full for i in range(first, last)}

    def _rotary(self, hidden: Any, positions: Any, first: int, last: int) -> dict[int, Any]:
        """Each layer's rotary embedding: one for all, or one per layer type (Gemma 3: local and global)."""
        rotary = self.decoder.rotary_emb
        if not hasattr(rotary, "layer_types"):
            shared = rotary(hidden, position_ids=positions)
            return dict.fromkeys(range(first, last), shared)
        by_type = {t: rotary(hidden, position_ids=positions, layer_type=t)
                   for t in {self._layer_type(i) for i in range(first, last)}}
        return {i: by_type[self._layer_type(i)] for i in range(first, last)}

    def lower_states_masked(self, prefix: PrefixState, suffixes: Sequence[Sequence[int]], allowed: Any,
                            positions: Any) -> list[Any]:
        """`lower_states` with an attention pattern and position ids of their own (see `_run`)."""
        import torch

        with torch.no_grad():
            ids, _ = self._pad(suffixes)
            hidden = self.decoder.embed_tokens(ids)
            if self.split:
                cache = _repeated(prefix.lower_cache, len(suffixes))
                hidden = self._run(hidden, 0, self.split, cache, past=len(prefix.ids), key_valid=None,
                                   allowed=allowed, positions=positions)
        return [hidden[i, : len(s)].clone() for i, s in enumerate(suffixes)]

    def forward_masked(self, prefix: PrefixState, inputs: Sequence[Any], allowed: Any, positions: Any) -> Any:
        """`forward` with an attention pattern and position ids of their own (see `_run`)."""
        import torch

        cache = self._new_cache()
        self._run(prefix.hidden, self.split, len(self.layers), cache, past=0, key_valid=None)
        cache.batch_repeat_interleave(len(inputs))
        width = max(x.shape[0] for x in inputs)
        hidden = torch.zeros(len(inputs), width, inputs[0].shape[-1], dtype=self.dtype, device=self.device)
        for i, x in enumerate(inputs):
            hidden[i, : x.shape[0]] = x
        out = self._run(hidden, self.split, len(self.layers), cache, past=len(prefix.ids), key_valid=None,
                        allowed=allowed, positions=positions)
        return self.decoder.norm(out)


def _repeated(cache: Any, times: int) -> Any:
    """A copy of `cache` repeated `times` along the batch (the original stays as it is)."""
    import copy

    out = copy.copy(cache)
    out.layers = [copy.copy(layer) for layer in cache.layers]
    out.batch_repeat_interleave(times)
    return out
