"""What a training step minimises, read from the next-token distributions at a few positions only.

- `lm`: cross-entropy of the answer's tokens and end-of-sequence after the prompt: causal-LM tuning.
- `label_ce`: cross-entropy over the label set's whole-sequence likelihoods, exactly what the
  engine's `scoring` mode turns into probabilities: each label's token log-probabilities (over the
  full vocabulary) summed along the label trie, normalised over the labels.

An example becomes one or more `Row`s (token sequences) and, in each, the `heads`: positions whose
next-token distribution the loss reads. Only those positions go through the LM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.prompter import LabelSpace

OBJECTIVES = ("lm", "label_ce")


@dataclass(frozen=True)
class Example:
    """A training turn as token ids: the serving prompt and its gold label."""

    prompt_ids: tuple[int, ...]
    label_set: str
    label: str


@dataclass(frozen=True)
class Row:
    """A token sequence and the positions whose next-token distributions the loss reads."""

    ids: tuple[int, ...]
    heads: tuple[int, ...]


def example_rows(objective: str, example: Example, space: LabelSpace, eos_token_id: int | None) -> list[Row]:
    """The rows `objective` needs for `example`.

    `lm`: the prompt followed by the answer (and end-of-sequence), heads where each answer token is
    predicted. `label_ce`: one row per node of the label trie (the prompt followed by the node's
    tokens), its head at the end; a single-token label set needs just the prompt.
    """
    prompt = example.prompt_ids
    if objective == "lm":
        answer = list(space.trie.label_tokens[example.label])
        if eos_token_id is not None:
            answer.append(eos_token_id)
        ids = prompt + tuple(answer)
        return [Row(ids, tuple(range(len(prompt) - 1, len(ids) - 1)))]
    if objective == "label_ce":
        return [Row(prompt + node, (len(prompt) + len(node) - 1,)) for node in space.trie.query_points]
    raise ValueError(f"unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")


def objective_loss(objective: str, head_logits: Any, examples: Sequence[Example], spaces: Sequence[LabelSpace],
                   eos_token_id: int | None, weights: Sequence[float] | None = None) -> Any:
    """The mean loss of a batch from the logits at its heads, in the order `example_rows` gives them.

    `weights` (one per example, `label_ce` only): the weighted mean, sum(w_i * loss_i) / sum(w_i).
    """
    import torch

    logprobs = torch.log_softmax(head_logits.to(torch.promote_types(head_logits.dtype, torch.float32)), dim=-1)
    if objective == "lm":
        targets = []
        for example, space in zip(examples, spaces, strict=True):
            targets.extend(space.trie.label_tokens[example.label])
            if eos_token_id is not None:
                targets.append(eos_token_id)
        target = torch.tensor(targets, device=logprobs.device)
        return -logprobs.gather(1, target.unsqueeze(1)).mean()
    scores, gold = label_log_scores(logprobs, examples, spaces)
    if weights is None:
        return torch.nn.functional.cross_entropy(scores, gold)
    losses = torch.nn.functional.cross_entropy(scores, gold, reduction="none")
    w = torch.tensor(list(weights), dtype=losses.dtype, device=losses.device)
    return (losses * w).sum() / w.sum()


def label_log_scores(logprobs: Any, examples: Sequence[Example], spaces: Sequence[LabelSpace]) -> tuple[Any, Any]:
    """((E, W) label scores, (E,) gold indices) from `label_ce` rows' head log-probabilities.

    A label's score is the sum of its tokens' log-probabilities along the trie; softmax over a
    row gives the served probabilities. Slots past a smaller label set's size are -inf.
    """
    import torch

    rows, tokens, slots, gold = [], [], [], []
    base = 0
    width = max(len(space.labels) for space in spaces)
    for e, (example, space) in enumerate(zip(examples, spaces, strict=True)):
        head_of = {node: base + j for j, node in enumerate(space.trie.query_points)}
        for k, label in enumerate(space.labels):
            ids = space.trie.label_tokens[label]
            for depth in range(len(ids)):
                rows.append(head_of[ids[:depth]])
                tokens.append(ids[depth])
                slots.append(e * width + k)
        gold.append(space.labels.index(example.label) if example.label in space.labels else -100)
        base += len(space.trie.query_points)
    device = logprobs.device
    picked = logprobs[torch.tensor(rows, device=device), torch.tensor(tokens, device=device)]
    scores = torch.zeros(len(examples) * width, device=device, dtype=picked.dtype)
    scores = scores.index_add(0, torch.tensor(slots, device=device), picked)
    present = torch.zeros_like(scores, dtype=torch.bool)
    present[torch.tensor(slots, device=device)] = True
    scores = scores.masked_fill(~present, float("-inf")).view(len(examples), width)
    return scores, torch.tensor(gold, device=device)
