"""What happens to an input entry after an attempt: the one place that decides ack, retry or dead-letter."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    OUTPUT = "output"            # write the label and acknowledge, in one transaction
    DEAD_LETTER = "dead_letter"  # write to the dead-letter stream and acknowledge, in one transaction
    RETRY = "retry"              # leave it pending: a later claim (by any worker) delivers it again


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""


OUTPUT = Decision(Action.OUTPUT)


@dataclass(frozen=True)
class AckPolicy:
    """Rejected input goes aside at once; a failure is retried until `max_deliveries` attempts."""

    max_deliveries: int = 3

    def rejected(self, reason: str) -> Decision:
        """The entry can never be labelled (malformed, prompt over the window, unknown adapter)."""
        return Decision(Action.DEAD_LETTER, reason)

    def failed(self, reason: str, deliveries: int) -> Decision:
        """The attempt failed for a reason that may pass (an engine error)."""
        if deliveries >= self.max_deliveries:
            return Decision(Action.DEAD_LETTER, f"failed {deliveries} deliveries; last error: {reason}")
        return Decision(Action.RETRY, reason)

    def claimed(self, deliveries: int, last_error: str | None) -> Decision | None:
        """An entry taken over from an idle consumer: set aside past the limit, else labelled again."""
        if deliveries <= self.max_deliveries:
            return None
        why = last_error or "its consumer stopped before finishing it"
        return Decision(Action.DEAD_LETTER, f"delivered {deliveries} times, more than the limit of "
                                            f"{self.max_deliveries}; last error: {why}")
