"""The interface every decoding mode implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.prompter import LabelSpace


@dataclass(frozen=True)
class ScoringItem:
    """One prompt (as token ids) to classify within `space`, through `lora` (None: base model)."""

    prompt_ids: list[int]
    space: LabelSpace
    lora: Any = None


@dataclass(frozen=True)
class Decoded:
    """A mode's answer for one item: probabilities, the label it chose if it chose one, and the
    prompt tokens the engine processed for it and of those served from the prefix cache."""

    probs: dict[str, float]
    label: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0


class DecodingMode(ABC):
    name: str

    @abstractmethod
    def decode(self, llm: Any, items: Sequence[ScoringItem]) -> list[Decoded]:
        """Run `items` through the vLLM `llm` in one batch."""
