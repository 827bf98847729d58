"""Prompts as a given model sees them: the prompt builder and label tokens for its tokenizer.

Serving, evaluation and training all build prompts through one `Prompter`, so what a model is
trained on and what it is asked are byte-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.label_trie import LabelTrie
from pipeline.core.labels import get_label_set
from pipeline.core.predictions import LabelRequest
from pipeline.core.prompts import RESPONSE_MARK, PromptBuilder, PromptConfig


@dataclass(frozen=True)
class LabelSpace:
    """A label set as the model sees it: answer strings and their token sequences."""

    labels: tuple[str, ...]
    answers: tuple[str, ...]
    trie: LabelTrie


class Prompter:
    """Builds prompts within a model's context window, counting tokens with its tokenizer."""

    def __init__(self, tokenizer: Any, context_turns: int = 2, max_model_len: int = 512) -> None:
        self.tokenizer = tokenizer
        self.context_turns = context_turns
        self.max_model_len = max_model_len
        self._spaces: dict[str, tuple[PromptBuilder, LabelSpace]] = {}

    @classmethod
    def from_model(cls, model_dir: str, context_turns: int = 2, max_model_len: int = 512) -> Prompter:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(model_dir), context_turns, max_model_len)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def builder(self, label_set: str) -> PromptBuilder:
        return self._space(label_set)[0]

    def space(self, label_set: str) -> LabelSpace:
        return self._space(label_set)[1]

    def build(self, request: LabelRequest) -> str:
        return self.builder(request.label_set).build(request.turn, request.context)

    def build_all(self, requests: Sequence[LabelRequest]) -> list[str]:
        return [self.build(r) for r in requests]

    def _space(self, label_set: str) -> tuple[PromptBuilder, LabelSpace]:
        if label_set not in self._spaces:
            labels = get_label_set(label_set)
            probe = PromptBuilder(labels)
            head = self.encode(RESPONSE_MARK)
            label_tokens = {}
            for label in labels.labels:
                # Tokenised after the prompt's end, as the model sees it, not alone.
                whole = self.encode(RESPONSE_MARK + probe.answer(label))
                if whole[: len(head)] != head:
                    raise ConfigError(f"model: its tokenizer merges the answer {label!r} into the prompt's end")
                label_tokens[label] = whole[len(head):]
            trie = LabelTrie(label_tokens)
            budget = self.max_model_len - trie.max_tokens - 1
            builder = PromptBuilder(labels, PromptConfig(self.context_turns, budget),
                                    lambda text: len(self.encode(text)))
            answers = tuple(builder.answer(x) for x in labels.labels)
            self._spaces[label_set] = (builder, LabelSpace(labels.labels, answers, trie))
        return self._spaces[label_set]
