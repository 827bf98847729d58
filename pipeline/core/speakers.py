"""Who gets an emotion: the speaker policy of `serve` and `label`, decided here and nowhere else.

The EU AI Act (Regulation 2024/1689, Art. 5(1)(f)) prohibits inferring the emotions of natural
persons in the workplace (save for medical or safety reasons): in a call centre, the agents. With
`label_speakers` set (e.g. `(?i)^customer$`), only turns whose speaker the regular expression
finds (`re.search`, as the alert rules' `speaker`) are sent to the engine for an emotion; every
other turn is *context only*: kept (the stream's context store, the manifest's context) so later
turns' prompts still show it, written out flagged `context_only` with no label, confidence or
probabilities, and its video is never described. Unset (the default), every speaker is labelled.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.config_fields import field_help
from pipeline.core.errors import ConfigError

FIELD = "label_speakers"


def label_speakers_field() -> Any:
    """The `label_speakers` field of every config that labels turns (`serve`'s stream, `label`'s job)."""
    return field(default=None, metadata=field_help(
        "only turns whose speaker this regular expression finds (re.search; e.g. '(?i)^customer$') get an "
        "emotion; other speakers' turns are context only: used in later turns' prompts, written out flagged "
        "context_only with no label (default: every speaker is labelled)", metavar="REGEX"))


@dataclass(frozen=True)
class SpeakerPolicy:
    """`labels(speaker)`: whether a turn of `speaker` gets an emotion (True for all without a pattern)."""

    pattern: str | None = None
    _regex: re.Pattern | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pattern is None:
            return
        if not isinstance(self.pattern, str) or not self.pattern.strip():
            raise ConfigError(f"{FIELD}: must be a non-empty regular expression, got {self.pattern!r}")
        try:
            regex = re.compile(self.pattern)
        except re.error as e:
            raise ConfigError(f"{FIELD}: {self.pattern!r} is not a valid regular expression ({e})") from None
        object.__setattr__(self, "_regex", regex)

    @property
    def everyone(self) -> bool:
        """No pattern: every speaker is labelled (as before the policy existed)."""
        return self._regex is None

    def labels(self, speaker: str) -> bool:
        """Whether a turn of `speaker` is sent to the engine for an emotion."""
        return self._regex is None or self._regex.search(str(speaker)) is not None
