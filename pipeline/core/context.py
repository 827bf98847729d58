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


def window_start(turn_id: int, z: int, costs: Mapping[int, int], budget: int, step: int) -> int:
    """Where the conversation prompt's window of turn `turn_id` starts: its context is the known
    turns with ids in [start, turn_id).

    `costs` maps the known previous turns' ids to their token cost (turns outside
    `context_ids(turn_id, z)` are ignored), `budget` is what the context may take. The start is the
    first of these candidates whose turns fit: the multiples of `step` from `turn_id − z` on, then
    every id after the last of them (a fallback for turns too long for a whole step), up to
    `turn_id` itself (no context). So the window moves in steps of `step` ids: between moves, the
    prompt of turn k + 1 is the prompt of turn k plus turn k + 1, and an engine's prefix cache (or
    one training pass over the conversation) serves every turn of the window at once. The start
    never moves back as `turn_id` grows (a candidate too long for turn k is too long for k + 1).
    """
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    low = max(0, turn_id - z) if z > 0 else turn_id
    first = -(-low // step) * step
    last_anchor = max(first, turn_id // step * step) if first <= turn_id else turn_id
    candidates = [*range(first, last_anchor + 1, step), *range(last_anchor + 1, turn_id + 1)]
    inside = sorted(i for i in costs if low <= i < turn_id)
    for start in candidates:
        if sum(costs[i] for i in inside if i >= start) <= budget:
            return start
    return turn_id
