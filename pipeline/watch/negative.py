"""A turn's negative score: the probability its label set gives to its negative emotions.

The page and any rule that ranks turns by distress use it. Negative emotions are named once, in
`pipeline.core.labels` (`NEGATIVE_EMOTIONS`, `NEGATIVE_LABELS`), which the evaluation report's
`negative` figures use too; each label set's negative labels are those of its labels in that list
(MELD: anger, disgust, fear, sadness; EmoryNLP: mad, scared, sad).
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.core.labels import NEGATIVE_EMOTIONS, NEGATIVE_LABELS

__all__ = ["NEGATIVE_EMOTIONS", "NEGATIVE_LABELS", "negative_score"]


def negative_score(probs: Mapping[str, float]) -> float:
    """Sum of the probabilities of the negative labels in `probs` (a label message names no label
    set, and no label is negative in one set and not in another, so the names suffice)."""
    return float(sum(p for label, p in probs.items() if label in NEGATIVE_EMOTIONS))
