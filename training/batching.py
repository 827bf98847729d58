"""Length-bucketed batches: one label set per batch (one shared prefix), similar lengths together.

Each epoch shuffles every label set's examples, sorts windows of `window` batches by length and
cuts them into batches, then shuffles the batch order: padding stays small and every epoch still
sees a different order. Deterministic for a seed, so a resumed run rebuilds the same epoch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EpochPlan:
    batches: tuple[tuple[int, ...], ...]
    real_tokens: int
    padded_tokens: int

    @property
    def padding_share(self) -> float:
        """The share of computed token positions that are padding."""
        return 1 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0


def plan_epoch(lengths: Sequence[int], groups: Sequence[str], batch_size: int, seed: int, rank: int = 0,
               world_size: int = 1, window: int = 32) -> EpochPlan:
    """Batches of example indices for one epoch of this rank; `groups` keeps label sets apart."""
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        by_group.setdefault(group, []).append(i)
    batches: list[tuple[int, ...]] = []
    for group in sorted(by_group):
        order = by_group[group]
        rng.shuffle(order)
        span = batch_size * window
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
            batches.extend(tuple(chunk[k : k + batch_size]) for k in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    mine = tuple(batches[rank::world_size])
    real = sum(lengths[i] for batch in mine for i in batch)
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in mine)
    return EpochPlan(mine, real, padded)
