"""The loss of one batch, two ways: `fast` (shared prefix, frozen layers cached, LM head at the
heads only) and `plain` (every row padded to full length, full-vocabulary logits everywhere).

Both give the same loss and gradients (tested); `plain` serves any architecture and is the
baseline `dialoguellm bench train` measures the fast path against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.core.prompter import LabelSpace
from training.batch_loss import BatchLoss, _common_prefix
from training.objectives import Example

__all__ = ["STEP_KINDS", "CONVERSATION_STEP", "BatchLoss", "FastBatchLoss", "PlainBatchLoss", "make_batch_loss"]

STEP_KINDS = ("fast", "plain")
CONVERSATION_STEP = "conversation"  # the fast step of the conversation prompt (training.conversation_step)


class PlainBatchLoss(BatchLoss):
    """Today's computation: rows right-padded to full length, logits at every position."""

    def head_logits(self, batch: Sequence[int]) -> tuple[Any, int]:
        import torch

        rows = [row for i in batch for row in self.rows[i]]
        width = max(len(r.ids) for r in rows)
        device = next(self.model.parameters()).device
        ids = torch.tensor([list(r.ids) + [self.pad_id] * (width - len(r.ids)) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r.ids) + [0] * (width - len(r.ids)) for r in rows], device=device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        which_row = [k for k, r in enumerate(rows) for _ in r.heads]
        position = [h for r in rows for h in r.heads]
        head_logits = logits[torch.tensor(which_row, device=device), torch.tensor(position, device=device)]
        return head_logits, int(mask.sum())


class FastBatchLoss(BatchLoss):
    """The shared instruction prefix once per batch; with LoRA on the top layers only, the frozen
    layers' outputs computed once per example in `prepare` and reused every epoch."""

    def __init__(self, *args: Any, split: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from training.prefix_runner import PrefixRunner

        self.runner = PrefixRunner(self.model, split)
        self.prefixes: dict[str, Any] = {}
        self.lower: list[list[Any]] = []

    def prepare(self, examples: Sequence[Example], log: Callable[[str], None]) -> None:
        super().prepare(examples, log)
        shared: dict[str, tuple[int, ...]] = {}
        for e in self.examples:
            seen = shared.get(e.label_set)
            shared[e.label_set] = e.prompt_ids[:-1] if seen is None else _common_prefix(seen, e.prompt_ids[:-1])
        self.model.eval()  # no dropout in the frozen part; the loop sets train mode again
        self.prefixes = {name: self.runner.prefix_state(ids) for name, ids in shared.items()}
        self.lower = []
        if self.runner.split:
            self._cache_lower_layers(log)

    def computed_length(self, index: int) -> int:
        skip = len(self.prefixes[self.examples[index].label_set].ids)
        return sum(len(row.ids) - skip for row in self.rows[index])

    def head_logits(self, batch: Sequence[int]) -> tuple[Any, int]:
        import torch

        label_set = self.examples[batch[0]].label_set
        prefix = self.prefixes[label_set]
        skip = len(prefix.ids)
        rows = [row for i in batch for row in self.rows[i]]
        if self.lower:
            inputs = [state for i in batch for state in self.lower[i]]
        else:
            inputs = self.runner.input_states([r.ids[skip:] for r in rows])
        hidden = self.runner.forward(prefix, inputs)
        device = hidden.device
        which_row = [k for k, r in enumerate(rows) for _ in r.heads]
        position = [h - skip for r in rows for h in r.heads]
        heads = hidden[torch.tensor(which_row, device=device), torch.tensor(position, device=device)]
        computed = sum(len(r.ids) - skip for r in rows)
        return self.runner.lm_head(heads), computed

    def _cache_lower_layers(self, log: Callable[[str], None], chunk: int = 32) -> None:
        order = sorted(range(len(self.examples)), key=self.computed_length)
        self.lower = [[] for _ in self.examples]
        started, done = time.perf_counter(), 0
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            by_set: dict[str, list[int]] = {}
            for i in part:
                by_set.setdefault(self.examples[i].label_set, []).append(i)
            for label_set, indices in by_set.items():
                prefix = self.prefixes[label_set]
                suffixes = [row.ids[len(prefix.ids):] for i in indices for row in self.rows[i]]
                states = iter(self.runner.lower_states(prefix, suffixes))
                for i in indices:
                    self.lower[i] = [next(states) for _ in self.rows[i]]
            done += len(part)
            if done == len(order) or start // chunk % 20 == 0:
                elapsed = time.perf_counter() - started
                eta = elapsed / done * (len(order) - done)
                log(f"frozen layers 0-{self.runner.split - 1}: {done}/{len(order)} examples, "
                    f"{elapsed:.0f} s, ETA {eta:.0f} s")


def make_batch_loss(kind: str, model: Any, objective: str, spaces: dict[str, LabelSpace],
                    eos_token_id: int | None, pad_id: int, split: int = 0,
                    class_weights: dict[str, dict[str, float]] | None = None) -> BatchLoss:
    if kind == "fast":
        return FastBatchLoss(model, objective, spaces, eos_token_id, pad_id, class_weights, split=split)
    if kind == "plain":
        return PlainBatchLoss(model, objective, spaces, eos_token_id, pad_id, class_weights)
    if kind == CONVERSATION_STEP:
        from training.conversation_step import ConversationBatchLoss

        return ConversationBatchLoss(model, objective, spaces, eos_token_id, pad_id, class_weights, split=split)
    raise ValueError(f"unknown step {kind!r} (known: {', '.join(STEP_KINDS)})")
