"""The data model: a conversation is an ordered list of turns."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from pipeline.core.context import select_context


@dataclass(frozen=True)
class VideoSegment:
    """A time span of a video file (seconds), to be described in words."""

    uri: str
    start: float
    end: float


@dataclass(frozen=True)
class Turn:
    """One utterance of a conversation, optionally with its video segment and gold label."""

    conversation_id: str
    turn_id: int
    speaker: str
    text: str
    video: VideoSegment | None = None
    description: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Conversation:
    """Turns ordered by `turn_id`, with the name of the label set their labels belong to."""

    conversation_id: str
    turns: tuple[Turn, ...]
    label_set: str = field(default="meld")

    def context_of(self, index: int, z: int) -> tuple[Turn, ...]:
        """The context of the turn at position `index`, by the one context rule (`pipeline.core.context`)."""
        return select_context(self.turns[index].turn_id, z, self._by_id)

    @cached_property
    def _by_id(self) -> dict[int, Turn]:
        return {t.turn_id: t for t in self.turns}
