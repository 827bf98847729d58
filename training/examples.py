"""Training examples: the serving prompt's token ids and the gold label, for every labelled turn."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.datasets import load_dataset
from pipeline.core.errors import PromptTooLongError
from pipeline.core.evaluation import label_requests
from pipeline.core.predictions import LabelRequest
from pipeline.core.prompter import Prompter
from training.config import DataSource
from training.objectives import Example


def requests_from(sources: Sequence[DataSource], context_turns: int, seed: int = 0) -> list[LabelRequest]:
    """Every labelled turn of every source, each with its own label set, each source's
    conversations repeated by its `weight` (see `weighted`)."""
    requests: list[LabelRequest] = []
    for i, source in enumerate(sources):
        conversations = load_dataset(source.dataset, source.split, source.path, source.resolved_label_set())
        chosen = label_requests(conversations, context_turns, limit=source.limit)
        requests.extend(weighted(chosen, source.weight, seed + i))
    return requests


def weighted(requests: Sequence[LabelRequest], weight: float, seed: int) -> list[LabelRequest]:
    """`requests` repeated `weight` times on average, whole conversations at a time (a conversation's
    turns stay together and in order): floor(weight) copies of each, plus each conversation once
    more with probability frac(weight), drawn with `seed` (the same every run and every epoch)."""
    import random

    if weight == 1.0:
        return list(requests)
    by_conversation: dict[str, list[LabelRequest]] = {}
    for r in requests:
        by_conversation.setdefault(r.turn.conversation_id, []).append(r)
    whole, share = int(weight), weight - int(weight)
    rng = random.Random(seed)
    out: list[LabelRequest] = []
    for turns in by_conversation.values():
        copies = whole + (rng.random() < share)
        for _ in range(copies):
            out.extend(turns)
    return out


def encode_examples(requests: Sequence[LabelRequest], prompter: Prompter) -> tuple[list[Example], int]:
    """(examples, how many were left out): a turn whose prompt cannot fit the budget even without
    context is left out, never cut. The prompt is the one the engine serves, byte for byte."""
    examples, skipped = [], 0
    for request in requests:
        try:
            ids = prompter.build_ids(request)
        except PromptTooLongError:
            skipped += 1
            continue
        examples.append(Example(tuple(ids), request.label_set, request.turn.label or ""))
    return examples, skipped
