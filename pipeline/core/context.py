"""The one rule that picks a turn's context, on every path: training, evaluation, the stream, batch
labelling and the benchmarks.

The context of turn k is the turns with ids k − z … k − 1 that exist, oldest first. By id, not by
position: a stream cannot tell a turn still to come from one that never will, so it can only ask
for ids; a corpus with gaps in its ids (MELD's `Utterance_ID`) then gets the same, shorter,
context everywhere, and what a model was trained on is what it is asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def context_ids(turn_id: int, z: int) -> range:
    """The turn ids whose turns make up turn `turn_id`'s context, oldest first."""
    return range(max(0, turn_id - z), turn_id) if z > 0 else range(0)


def select_context(turn_id: int, z: int, known: Mapping[int, T]) -> tuple[T, ...]:
    """The context of turn `turn_id` among the `known` turns (by id), oldest first."""
    return tuple(known[i] for i in context_ids(turn_id, z) if i in known)
