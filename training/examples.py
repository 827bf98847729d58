"""Training examples: the serving prompt plus the label's tokens, loss on the answer only."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.datasets import load_dataset
from pipeline.evaluation import label_requests
from pipeline.predictions import LabelRequest
from pipeline.prompter import Prompter
from training.config import DataSource

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]


def requests_from(sources: Sequence[DataSource], context_turns: int) -> list[LabelRequest]:
    """Every labelled turn of every source, each with its own label set."""
    requests: list[LabelRequest] = []
    for source in sources:
        conversations = load_dataset(source.dataset, source.split, source.path)
        requests.extend(label_requests(conversations, context_turns, limit=source.limit))
    return requests


def tokenize(request: LabelRequest, prompter: Prompter, eos_token_id: int | None) -> TokenizedExample:
    """Prompt ids (masked out of the loss) followed by the label's ids and end-of-sequence.

    The label ids are those the engine scores after the same prompt, so training teaches exactly
    the sequences served.
    """
    prompt_ids = prompter.encode(prompter.build(request))
    answer = list(prompter.space(request.label_set).trie.label_tokens[request.turn.label])
    if eos_token_id is not None:
        answer.append(eos_token_id)
    return TokenizedExample(prompt_ids + answer, [IGNORE_INDEX] * len(prompt_ids) + answer)


def batches(examples: Sequence[TokenizedExample], batch_size: int, pad_id: int, seed: int, rank: int = 0,
            world_size: int = 1) -> list[dict[str, list[list[int]]]]:
    """Shuffled, rank-sharded, right-padded batches (lists; the loop makes tensors)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    order = order[rank::world_size]
    out = []
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start : start + batch_size]]
        width = max(len(e.input_ids) for e in chunk)
        out.append({
            "input_ids": [e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in chunk],
            "attention_mask": [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in chunk],
            "labels": [e.labels + [IGNORE_INDEX] * (width - len(e.labels)) for e in chunk],
        })
    return out
