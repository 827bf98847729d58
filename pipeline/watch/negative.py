"""A turn's negative score: the probability its label set gives to its negative emotions.

The one definition, for the watch page and any rule that ranks turns by distress. Negative
emotions are named once; each label set's negative labels are those of its labels in that list
(MELD: anger, disgust, fear, sadness; EmoryNLP: mad, scared, sad).
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.core.labels import LABEL_SETS

NEGATIVE_EMOTIONS = frozenset({"anger", "angry", "mad", "frustrated", "disgust", "fear", "scared", "sadness", "sad"})

NEGATIVE_LABELS: dict[str, tuple[str, ...]] = {
    name: tuple(label for label in s.labels if label in NEGATIVE_EMOTIONS) for name, s in LABEL_SETS.items()
}


def negative_score(probs: Mapping[str, float]) -> float:
    """Sum of the probabilities of the negative labels in `probs` (a label message names no label
    set, and no label is negative in one set and not in another, so the names suffice)."""
    return float(sum(p for label, p in probs.items() if label in NEGATIVE_EMOTIONS))
