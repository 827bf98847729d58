"""Per-label probabilities from next-token distributions, exact when labels share first tokens.

Each label is a token sequence. Labels form a trie; the model is asked for the next-token
distribution only at branch points (nodes with several children). P(label) is the product of the
renormalised branch probabilities along its path; nodes with one child are forced (probability 1),
as they are under constrained decoding. With distinct first tokens, one forward pass suffices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Prefix = tuple[int, ...]


class LabelTrie:
    """The labels of a label set as token sequences, with the branch points to query."""

    def __init__(self, label_tokens: Mapping[str, Sequence[int]]) -> None:
        seqs = {label: tuple(ids) for label, ids in label_tokens.items()}
        for label, ids in seqs.items():
            if not ids:
                raise ValueError(f"label {label!r} has no tokens")
            for other, other_ids in seqs.items():
                if other != label and other_ids[: len(ids)] == ids:
                    raise ValueError(f"label {label!r} is a token prefix of {other!r}")
        self.label_tokens = seqs
        children: dict[Prefix, set[int]] = {}
        for ids in seqs.values():
            for depth in range(len(ids)):
                children.setdefault(ids[:depth], set()).add(ids[depth])
        self.children = {prefix: sorted(tokens) for prefix, tokens in children.items()}
        self.branch_points: list[Prefix] = sorted(
            (p for p, c in self.children.items() if len(c) > 1), key=lambda p: (len(p), p)
        )

    @property
    def max_tokens(self) -> int:
        return max(len(ids) for ids in self.label_tokens.values())

    def probabilities(self, branch_logprobs: Mapping[Prefix, Mapping[int, float]]) -> dict[str, float]:
        """P(label) for every label from the log-probabilities seen at each branch point.

        A branch point missing from `branch_logprobs`, or a child token missing at one, gets the
        smallest mass seen there (or an even share when nothing was seen), so every label keeps
        a probability; results sum to 1.
        """
        node_probs = {prefix: self._normalise(prefix, branch_logprobs.get(prefix, {}))
                      for prefix in self.branch_points}
        scores = {}
        for label, ids in self.label_tokens.items():
            p = 1.0
            for depth in range(len(ids)):
                dist = node_probs.get(ids[:depth])
                if dist is not None:
                    p *= dist[ids[depth]]
            scores[label] = p
        total = sum(scores.values())
        return {label: s / total for label, s in scores.items()}

    def _normalise(self, prefix: Prefix, logprobs: Mapping[int, float]) -> dict[int, float]:
        tokens = self.children[prefix]
        seen = [logprobs[t] for t in tokens if t in logprobs and math.isfinite(logprobs[t])]
        floor = min(seen) if seen else 0.0
        values = [logprobs.get(t, floor) if math.isfinite(logprobs.get(t, floor)) else floor for t in tokens]
        top = max(values)
        weights = [math.exp(v - top) for v in values]
        total = sum(weights)
        return {t: w / total for t, w in zip(tokens, weights)}
