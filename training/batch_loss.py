"""The base of every batch loss: examples in, the loss of a batch of units (examples, or conversation
segments) and the served label probabilities out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.core.prompter import LabelSpace
from training.objectives import Example, Row, example_rows, label_log_scores, objective_loss


class BatchLoss(ABC):
    """Turns batches of examples into their loss; `prepare` does the once-per-run work."""

    def __init__(self, model: Any, objective: str, spaces: dict[str, LabelSpace], eos_token_id: int | None,
                 pad_id: int, class_weights: dict[str, dict[str, float]] | None = None) -> None:
        self.model = model
        self.objective = objective
        self.spaces = spaces
        self.eos = eos_token_id
        self.pad_id = pad_id
        self.class_weights = class_weights or {}
        self.rows: list[list[Row]] = []

    # A batch is a list of units: one example each here, a conversation segment in the conversation step.
    @property
    def units(self) -> int:
        return len(self.examples)

    def members(self, unit: int) -> tuple[int, ...]:
        """The examples a unit holds, in the order its loss and probabilities list them."""
        return (unit,)

    def group(self, unit: int) -> str:
        """The label set of a unit (batches hold one)."""
        return self.examples[self.members(unit)[0]].label_set

    def chosen(self, batch: Sequence[int]) -> list[Example]:
        return [self.examples[i] for u in batch for i in self.members(u)]

    def prepare(self, examples: Sequence[Example], log: Callable[[str], None]) -> None:
        self.examples = list(examples)
        self.rows = [example_rows(self.objective, e, self.spaces[e.label_set], self.eos) for e in examples]

    def computed_length(self, index: int) -> int:
        """Token positions this example costs, for length bucketing."""
        return sum(len(row.ids) for row in self.rows[index])

    def loss(self, batch: Sequence[int]) -> tuple[Any, int]:
        """(mean loss, token positions computed) of the examples at `batch` (class-weighted mean
        when `class_weights` are given: each turn counts its gold label's weight)."""
        head_logits, computed = self.head_logits(batch)
        chosen = self.chosen(batch)
        weights = None
        if self.class_weights:
            weights = [self.class_weights.get(e.label_set, {}).get(e.label, 1.0) for e in chosen]
        loss = objective_loss(self.objective, head_logits, chosen, [self.spaces[e.label_set] for e in chosen],
                              self.eos, weights)
        return loss, computed

    def probabilities(self, batch: Sequence[int]) -> Any:
        """(E, W) served label probabilities of the examples of `batch`, in `chosen` order
        (objective `label_ce` rows)."""
        import torch

        with torch.no_grad():
            head_logits, _ = self.head_logits(batch)
            chosen = self.chosen(batch)
            logprobs = torch.log_softmax(head_logits.float(), dim=-1)
            scores, _ = label_log_scores(logprobs, chosen, [self.spaces[e.label_set] for e in chosen])
            return torch.softmax(scores, dim=-1)

    @abstractmethod
    def head_logits(self, batch: Sequence[int]) -> tuple[Any, int]:
        """(logits at every head of the batch's rows, token positions computed)."""


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return tuple(a[:n])
