"""`dialoguellm eval`: label a dataset split with the engine (or the MiniLM baseline) and score it."""

from __future__ import annotations

import argparse

from pipeline.cli import flags
from pipeline.cli.preflight import preflight
from pipeline.core.datasets import DATASETS, SPLITS, load_dataset
from pipeline.core.errors import DataError


def eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--split", default="test", help=f"one of {', '.join(SPLITS)}")
    flags.data_flag(p)
    p.add_argument("--label-set", help="label set of a jsonl dataset (default: meld)")
    p.add_argument("--limit", type=int, help="evaluate the first N labelled turns")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--report", default="report.json", help="where the JSON report goes; the PNG lands beside it")
    p.add_argument("--baseline", choices=("minilm",),
                   help="evaluate a baseline instead of the LLM: MiniLM-L6 embeddings + logistic regression, "
                        "fitted on the dataset's train split (utterance only)")
    flags.model_flags(p)


def run_eval(args: argparse.Namespace) -> int:
    from pipeline.core.evaluation import evaluate_and_report, label_requests
    from pipeline.core.prompter import Prompter
    from workers.model_store import resolve_model

    checked = preflight(args)
    config = checked.engine
    conversations = load_dataset(args.dataset, args.split, args.data, args.label_set)
    requests = label_requests(conversations, config.context_turns, limit=args.limit)
    if not requests:
        raise DataError(f"{args.dataset} {args.split}: no labelled turns to evaluate")
    where = dict(dataset=args.dataset, split=args.split)
    if args.baseline:
        from workers.minilm_baseline import MiniLMBaseline

        train = label_requests(load_dataset(args.dataset, "train", args.data, args.label_set), 0)
        report = evaluate_and_report(MiniLMBaseline().fit(train), requests, args.report, args.batch_size,
                                     model=MiniLMBaseline.name, adapter=None, train_turns=len(train), **where)
        print(f"{report['turns_per_s']:.0f} turns/s (fitted on {len(train)} {args.dataset} train turns)")
        return 0
    # Every prompt is built once before the engine starts: one too long for the window fails here.
    Prompter.from_model(resolve_model(config.model), config.context_turns, config.max_model_len).build_all(requests)
    from workers.engine import EmotionEngine

    engine = EmotionEngine(config)
    adapter = engine.adapter_name(None)
    evaluate_and_report(engine, requests, args.report, args.batch_size,
                        engine.temperature(adapter, requests[0].label_set), model=engine.model, adapter=adapter,
                        merged=engine.merged, context_turns=config.context_turns, decoding=config.decoding, **where)
    return 0
