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


def requests_from(sources: Sequence[DataSource], context_turns: int) -> list[LabelRequest]:
    """Every labelled turn of every source, each with its own label set."""
    requests: list[LabelRequest] = []
    for source in sources:
        conversations = load_dataset(source.dataset, source.split, source.path)
        requests.extend(label_requests(conversations, context_turns, limit=source.limit))
    return requests


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
