"""What the engine is asked and what it answers, independent of the engine behind it."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.turns import Turn


@dataclass(frozen=True)
class LabelRequest:
    """Label `turn` given the turns before it; `adapter` None means the engine's default."""

    turn: Turn
    context: tuple[Turn, ...] = ()
    label_set: str = "meld"
    adapter: str | None = None


@dataclass(frozen=True)
class Prediction:
    """A label from the label set, its probability, and a probability for every label."""

    label: str
    confidence: float
    probs: dict[str, float] = field(default_factory=dict)
    adapter: str | None = None

    @classmethod
    def from_probs(cls, probs: dict[str, float], adapter: str | None, label: str | None = None) -> Prediction:
        """The most probable label, unless a decoder already chose one."""
        chosen = label if label in probs else max(probs, key=probs.__getitem__)
        return cls(chosen, probs[chosen], probs, adapter)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]
