"""Per-label probabilities from next-token log-probabilities, exact when labels share first tokens.

Each label is a token sequence; the labels form a trie. The model is asked, at every internal
node (a proper prefix of some label), for the log-probabilities of that node's child tokens. A
label's score is the log-likelihood of its whole token sequence, the sum along its path; scores
are normalised over the labels. With single-token labels only the root is asked: one forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Prefix = tuple[int, ...]


class LabelTrie:
    """The labels of a label set as token sequences, with the prefixes to query."""

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
        self.query_points: list[Prefix] = sorted(self.children, key=lambda p: (len(p), p))

    @property
    def max_tokens(self) -> int:
        return max(len(ids) for ids in self.label_tokens.values())

    def probabilities(self, node_logprobs: Mapping[Prefix, Mapping[int, float]]) -> dict[str, float]:
        """P(label) for every label from the log-probabilities seen at the trie's nodes.

        A node or token missing from `node_logprobs` counts as certain (log-probability 0), as a
        token is under constrained decoding once the prefix leaves it no alternative.
        """
        scores = {}
        for label, ids in self.label_tokens.items():
            total = 0.0
            for depth in range(len(ids)):
                lp = node_logprobs.get(ids[:depth], {}).get(ids[depth], 0.0)
                total += lp if math.isfinite(lp) else -1e9
            scores[label] = total
        top = max(scores.values())
        weights = {label: math.exp(s - top) for label, s in scores.items()}
        norm = sum(weights.values())
        return {label: w / norm for label, w in weights.items()}
