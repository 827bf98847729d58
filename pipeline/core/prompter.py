"""Prompts as a given model sees them: the prompt builder and label tokens for its tokenizer.

Serving, evaluation and training all build prompts through one `Prompter`, so what a model is
trained on and what it is asked are the same token ids. Two prompts (`prompt`):

- `dialoguellm` (the paper's, the default): the instruction, the previous `context_turns` turns, the
  target, the response mark; tokenised as one string; the budget drops the oldest context turns first.
- `conversation` (`pipeline.core.conversation_prompt`): the instruction, then every turn up to the
  target (at most `context_turns` previous ones), each a line and a slot; its ids are the parts'
  own encodings concatenated, and the window of past turns moves in steps of `window_step` ids when
  the history outgrows `max_model_len` (`pipeline.core.context.window_start`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.context import context_ids, window_start
from pipeline.core.conversation_prompt import (
    PROMPTS,
    SLOT,
    conversation_instruction,
    conversation_line,
    conversation_text,
)
from pipeline.core.errors import ConfigError, PromptTooLongError
from pipeline.core.label_trie import LabelTrie
from pipeline.core.labels import get_label_set
from pipeline.core.predictions import LabelRequest
from pipeline.core.prompts import RESPONSE_MARK, PromptBuilder, PromptConfig
from pipeline.core.turns import Turn

DEFAULT_PROMPT = "dialoguellm"
DEFAULT_WINDOW_STEP = 8
_PART_CACHE = 1 << 16


@dataclass(frozen=True)
class LabelSpace:
    """A label set as the model sees it: answer strings and their token sequences."""

    labels: tuple[str, ...]
    answers: tuple[str, ...]
    trie: LabelTrie


@dataclass(frozen=True)
class ConversationIds:
    """A conversation prompt in parts: the instruction's ids, then each turn's line + slot ids
    (the window's turns oldest first, the target last). `ids` is their concatenation."""

    instruction: tuple[int, ...]
    turns: tuple[Turn, ...]
    parts: tuple[tuple[int, ...], ...]

    @property
    def ids(self) -> list[int]:
        out = list(self.instruction)
        for part in self.parts:
            out.extend(part)
        return out


class Prompter:
    """Builds prompts within a model's context window, counting tokens with its tokenizer."""

    def __init__(self, tokenizer: Any, context_turns: int = 2, max_model_len: int = 512,
                 prompt: str = DEFAULT_PROMPT, window_step: int = DEFAULT_WINDOW_STEP) -> None:
        if prompt not in PROMPTS:
            raise ConfigError(f"prompt: {prompt!r} is not one of {', '.join(PROMPTS)}")
        if window_step <= 0:
            raise ConfigError(f"window_step: must be > 0, got {window_step}")
        self.tokenizer = tokenizer
        self.context_turns = context_turns
        self.max_model_len = max_model_len
        self.prompt = prompt
        self.window_step = window_step
        self._spaces: dict[str, tuple[PromptBuilder, LabelSpace]] = {}
        self._parts: dict[str, tuple[int, ...]] = {}
        self._instructions: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_model(cls, model_dir: str, context_turns: int = 2, max_model_len: int = 512,
                   prompt: str = DEFAULT_PROMPT, window_step: int = DEFAULT_WINDOW_STEP) -> Prompter:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(model_dir), context_turns, max_model_len, prompt, window_step)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_part(self, text: str) -> tuple[int, ...]:
        """A part of a conversation prompt, encoded alone (no special tokens); cached."""
        ids = self._parts.get(text)
        if ids is None:
            if len(self._parts) >= _PART_CACHE:
                self._parts.clear()
            ids = self._parts[text] = tuple(self.tokenizer.encode(text, add_special_tokens=False))
        return ids

    def builder(self, label_set: str) -> PromptBuilder:
        return self._space(label_set)[0]

    def space(self, label_set: str) -> LabelSpace:
        return self._space(label_set)[1]

    def prompt_budget(self, label_set: str) -> int:
        """The most tokens a prompt may take: the window minus the longest label and one spare."""
        return self.max_model_len - self.space(label_set).trie.max_tokens - 1

    def build(self, request: LabelRequest) -> str:
        """The prompt as text (for the conversation prompt: what its token ids spell, part by part)."""
        if self.prompt == "conversation":
            conv = self.conversation(request)
            return conversation_text(get_label_set(request.label_set), conv.turns[-1], conv.turns[:-1])
        return self.builder(request.label_set).build(request.turn, request.context)

    def build_ids(self, request: LabelRequest) -> list[int]:
        """The prompt's token ids, as the engine sends them and training computes them."""
        if self.prompt == "conversation":
            return self.conversation(request).ids
        return self.encode(self.build(request))

    def build_all(self, requests: Sequence[LabelRequest]) -> list[str]:
        return [self.build(r) for r in requests]

    def build_all_ids(self, requests: Sequence[LabelRequest]) -> list[list[int]]:
        return [self.build_ids(r) for r in requests]

    def instruction_ids(self, label_set: str) -> tuple[int, ...]:
        """The conversation prompt's instruction (with the tokenizer's leading special tokens)."""
        if label_set not in self._instructions:
            self._instructions[label_set] = tuple(self.encode(conversation_instruction(get_label_set(label_set))))
        return self._instructions[label_set]

    def turn_part(self, turn: Turn) -> tuple[int, ...]:
        """A turn's line and slot, as the conversation prompt holds them."""
        return self.encode_part(conversation_line(turn)) + self.encode_part(SLOT)

    def conversation(self, request: LabelRequest) -> ConversationIds:
        """The conversation prompt of `request`: its window by the one rule, and its parts.

        `request.context` holds the known previous turns (at most `context_turns` ids back, as
        every path gathers them); the window is the part of them `window_start` keeps.
        """
        instruction = self.instruction_ids(request.label_set)
        target = request.turn
        target_part = self.turn_part(target)
        room = self.prompt_budget(request.label_set) - len(instruction) - len(target_part)
        if room < 0:
            raise PromptTooLongError(
                f"turn {target.turn_id} of conversation {target.conversation_id} alone takes "
                f"{len(instruction) + len(target_part)} tokens, over the budget of "
                f"{self.prompt_budget(request.label_set)}")
        allowed = set(context_ids(target.turn_id, self.context_turns))
        history = [t for t in request.context if t.turn_id in allowed]
        parts = {t.turn_id: self.turn_part(t) for t in history}
        start = window_start(target.turn_id, self.context_turns, {i: len(p) for i, p in parts.items()},
                             room, self.window_step)
        window = [t for t in history if t.turn_id >= start]
        return ConversationIds(instruction, (*window, target),
                               tuple(parts[t.turn_id] for t in window) + (target_part,))

    def _space(self, label_set: str) -> tuple[PromptBuilder, LabelSpace]:
        if label_set not in self._spaces:
            labels = get_label_set(label_set)
            probe = PromptBuilder(labels)
            conversation = self.prompt == "conversation"
            encode = self.encode_part if conversation else self.encode
            end = SLOT if conversation else RESPONSE_MARK
            head = list(encode(end))
            label_tokens = {}
            for label in labels.labels:
                # Tokenised after the prompt's end, as the model sees it, not alone.
                whole = list(encode(end + probe.answer(label)))
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
