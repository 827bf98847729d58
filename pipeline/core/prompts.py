"""The DialogueLLM prompt: instruction with labels, previous z turns, target turn, video description.

The instruction comes first and is identical for every turn of a label set, so an engine with prefix
caching computes it once. Training and serving build prompts here, so they are byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.core.errors import ConfigError, PromptTooLongError
from pipeline.core.labels import LabelSet
from pipeline.core.turns import Turn

TokenCounter = Callable[[str], int]

RESPONSE_MARK = "### Response:"
ANSWER_PREFIX = " "


def approximate_token_count(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters a token), for budgets without a model."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class PromptConfig:
    """How much of the conversation a prompt shows, and how many tokens it may take."""

    context_turns: int = 2
    max_prompt_tokens: int = 480

    def __post_init__(self) -> None:
        if self.context_turns < 0:
            raise ConfigError(f"context_turns must be ≥ 0, got {self.context_turns}")
        if self.max_prompt_tokens <= 0:
            raise ConfigError(f"max_prompt_tokens must be > 0, got {self.max_prompt_tokens}")


def _clean(text: str) -> str:
    """Runs of whitespace as one space: every path (corpus, stream, manifest) gives the same prompt."""
    return " ".join(text.split())


def _line(turn: Turn) -> str:
    return f"{_clean(turn.speaker)}: {_clean(turn.text)}"


class PromptBuilder:
    """Builds the prompt for one target turn; deterministic for the same inputs."""

    def __init__(
        self,
        labels: LabelSet,
        config: PromptConfig = PromptConfig(),
        count_tokens: TokenCounter = approximate_token_count,
    ) -> None:
        self.labels = labels
        self.config = config
        self.count_tokens = count_tokens
        self.instruction = (
            "### Instruction:\n"
            "You are an expert in emotion analysis. Read the conversation, the target utterance and, "
            "when given, a description of its video. Which emotion does the speaker of the target "
            f"utterance express? Answer with exactly one label from: {', '.join(labels.labels)}.\n\n"
        )

    def answer(self, label: str) -> str:
        """The text the model should generate after the prompt for `label`."""
        return f"{ANSWER_PREFIX}{label}"

    def build(self, target: Turn, context: Sequence[Turn] = ()) -> str:
        """The prompt for `target`, with up to `context_turns` of `context` (oldest first)."""
        z = self.config.context_turns
        kept = list(context[-z:]) if z else []
        while True:
            prompt = self.instruction + self._example(target, kept)
            if self.count_tokens(prompt) <= self.config.max_prompt_tokens:
                return prompt
            if kept:
                kept.pop(0)
            else:
                raise PromptTooLongError(
                    f"turn {target.turn_id} of conversation {target.conversation_id} alone takes "
                    f"{self.count_tokens(prompt)} tokens, over the budget of "
                    f"{self.config.max_prompt_tokens}"
                )

    def _example(self, target: Turn, context: Sequence[Turn]) -> str:
        text = ""
        if context:
            text += "### Conversation:\n" + "".join(_line(t) + "\n" for t in context) + "\n"
        text += f"### Target utterance:\n{_line(target)}\n\n"
        if target.description:
            text += f"### Video description:\n{target.description.strip()}\n\n"
        return text + RESPONSE_MARK

