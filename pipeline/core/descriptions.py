"""What a describer says about a video segment, and what a failed attempt says instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Description:
    """A segment in words, the cues behind them, and who said it (name and version key the cache)."""

    text: str
    cues: dict[str, Any] = field(default_factory=dict)
    describer: str = ""
    version: str = ""


@dataclass(frozen=True)
class DescribeResult:
    """A description, or the reason there is none; never an exception across actors."""

    description: Description | None = None
    error: str | None = None
    frames: int = 0
    decode_s: float = 0.0
    describe_s: float = 0.0

    @property
    def text(self) -> str | None:
        return self.description.text if self.description else None
