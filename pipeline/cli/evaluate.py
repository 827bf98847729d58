"""`dialoguellm eval`: label a dataset split with the engine (or the MiniLM baseline) and score it."""

from __future__ import annotations

from pipeline.cli.configs import EvalConfig
from pipeline.cli.preflight import preflight
from pipeline.core.datasets import load_dataset
from pipeline.core.errors import DataError


def run_eval(config: EvalConfig) -> int:
    from pipeline.cli.eval_sets import check_prompts
    from pipeline.core.evaluation import evaluate_and_report, label_requests

    preflight(config)
    engine_config = config.engine
    conversations = load_dataset(config.dataset, config.split, config.data, config.label_set)
    requests = label_requests(conversations, engine_config.context_turns, limit=config.limit)
    if not requests:
        raise DataError(f"{config.dataset} {config.split}: no labelled turns to evaluate")
    where = dict(dataset=config.dataset, split=config.split)
    if config.baseline:
        from workers.minilm_baseline import MiniLMBaseline

        train = label_requests(load_dataset(config.dataset, "train", config.data, config.label_set), 0)
        report = evaluate_and_report(MiniLMBaseline().fit(train), requests, config.report, config.batch_size,
                                     model=MiniLMBaseline.name, adapter=None, train_turns=len(train), **where)
        print(f"{report['turns_per_s']:.0f} turns/s (fitted on {len(train)} {config.dataset} train turns)")
        return 0
    check_prompts(engine_config, requests)
    from workers.engine import EmotionEngine

    engine = EmotionEngine(engine_config)
    adapter = engine.adapter_name(None)
    evaluate_and_report(engine, requests, config.report, config.batch_size,
                        engine.temperature(adapter, requests[0].label_set), model=engine.model, adapter=adapter,
                        merged=engine.merged, context_turns=engine_config.context_turns,
                        decoding=engine_config.decoding, **where)
    return 0
