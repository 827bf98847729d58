"""The held-back sets a command evaluates adapters on (`--set DATASET[:SPLIT][=PATH]`), and each
set's requests as one engine config asks them: its own context, every prompt checked against the
window before an engine starts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core.errors import DataError


def load_sets(specs: Sequence[tuple[str, str, str | None]], data: str | None) -> list[tuple[str, Any]]:
    """(name, conversations) per `(dataset, split, path)`; a jsonl set that is a `corrections export`
    folder takes its label set from the export's manifest."""
    from pipeline.core.corrections import export_label_set
    from pipeline.core.datasets import load_dataset

    sets = []
    for dataset, split, path in specs:
        label_set = export_label_set(Path(path)) if dataset == "jsonl" and path else None
        sets.append((f"{dataset} {split}", load_dataset(dataset, split, path or data, label_set)))
    return sets


def check_prompts(engine_config: Any, requests: Sequence[Any]) -> None:
    """Build every request's prompt once, as `engine_config` would, before an engine starts: one
    over `max_model_len` raises here."""
    from pipeline.core.prompter import Prompter
    from workers.model_store import resolve_model

    Prompter.from_model(resolve_model(engine_config.model), engine_config.context_turns, engine_config.max_model_len,
                        engine_config.prompt, engine_config.window_step).build_all(requests)


def requests_for(engine_config: Any, sets: Sequence[tuple[str, Any]], limit: int | None) -> list[list[Any]]:
    """Each set's labelled turns as requests with `engine_config`'s context (the first `limit` of
    each), their prompts checked (`check_prompts`)."""
    from pipeline.core.evaluation import label_requests

    out = []
    for name, conversations in sets:
        requests = label_requests(conversations, engine_config.context_turns, limit=limit)
        if not requests:
            raise DataError(f"{name}: no labelled turns to evaluate")
        check_prompts(engine_config, requests)
        out.append(requests)
    return out


def evaluate_served(engine_config: Any, asked: Sequence[Sequence[Any]], batch_size: int,
                    desc: str) -> list[tuple[dict, list, float]]:
    """One engine serving `engine_config` labels each set's requests, with a progress bar: per set
    the report, the predictions as served and the temperature the engine applied."""
    import sys

    from tqdm import tqdm

    from pipeline.core.evaluation import evaluate
    from workers.engine import EmotionEngine

    engine = EmotionEngine(engine_config)
    out = []
    try:
        with tqdm(total=sum(map(len, asked)), desc=desc, unit="turn", file=sys.stderr) as bar:
            for requests in asked:
                temperature = engine.temperature(engine.adapter_name(None), requests[0].label_set)
                report, predictions = evaluate(engine, requests, batch_size, bar.update, temperature=temperature)
                out.append((report, predictions, temperature))
    finally:
        engine.close()
    return out
