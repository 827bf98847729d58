"""The subcommands of `dialoguellm`: each registers its flags and runs one flow."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cli import engine_arguments, engine_config
from pipeline.datasets import DATASETS, SPLITS, load_dataset, resolve_data_root
from pipeline.errors import DataError

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "training" / "configs" / "smollm2-135m-cpu.yaml"


def _eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate on a dataset split; write a JSON report and a PNG")
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--split", default="test", help=f"one of {', '.join(SPLITS)}")
    p.add_argument("--data", help="data root, dataset folder or file (default: $DIALOGUELLM_DATA or ../shared/data)")
    p.add_argument("--label-set", help="label set of a jsonl dataset (default: meld)")
    p.add_argument("--limit", type=int, help="evaluate the first N labelled turns")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--report", default="report.json", help="where the JSON report goes; the PNG lands beside it")
    p.add_argument("--baseline", choices=("minilm",),
                   help="evaluate a baseline instead of the LLM: MiniLM-L6 embeddings + logistic regression, "
                        "fitted on the dataset's train split (utterance only)")
    engine_arguments(p)
    p.set_defaults(run=run_eval)


def _evaluate_and_report(args: argparse.Namespace, classifier, requests: list, temperature: float = 1.0,
                         **details) -> float:
    """Label `requests` with a progress bar, write the report and plot, print them; returns turns/s."""
    import time

    from tqdm import tqdm

    from pipeline.evaluation import evaluate, write_report
    from pipeline.metrics import format_report

    start = time.perf_counter()
    with tqdm(total=len(requests), desc="labelling", unit="turn", file=sys.stderr) as bar:
        report, _ = evaluate(classifier, requests, args.batch_size, bar.update, temperature)
    rate = len(requests) / (time.perf_counter() - start)
    report.update(dataset=args.dataset, split=args.split, turns_per_s=round(rate, 1), **details)
    png = write_report(report, args.report)
    print(format_report(report))
    print(f"report: {args.report}  plot: {png}")
    return rate


def run_eval(args: argparse.Namespace) -> int:
    from pipeline.evaluation import label_requests
    from pipeline.prompter import Prompter
    from workers.adapters import check_adapter
    from workers.engine import EmotionEngine
    from workers.model_store import resolve_model

    conversations = load_dataset(args.dataset, args.split, args.data, args.label_set)
    config = engine_config(args).with_default_adapter()
    requests = label_requests(conversations, config.context_turns, limit=args.limit)
    if not requests:
        raise DataError(f"{args.dataset} {args.split}: no labelled turns to evaluate")
    if args.baseline:
        return _eval_baseline(args, requests)
    # Everything that can be wrong with the input fails here, before the engine starts.
    for name, path in config.adapters.items():
        check_adapter(name, path, config.max_lora_rank)
    Prompter.from_model(resolve_model(config.model), config.context_turns, config.max_model_len).build_all(requests)
    engine = EmotionEngine(config)
    adapter = engine.adapter_name(None)
    _evaluate_and_report(args, engine, requests, engine.temperature(adapter, requests[0].label_set),
                         model=engine.model, adapter=adapter, merged=engine.merged,
                         context_turns=config.context_turns, decoding=config.decoding)
    return 0


def _eval_baseline(args: argparse.Namespace, requests: list) -> int:
    from pipeline.evaluation import label_requests
    from workers.minilm_baseline import MiniLMBaseline

    train = label_requests(load_dataset(args.dataset, "train", args.data, args.label_set), 0)
    rate = _evaluate_and_report(args, MiniLMBaseline().fit(train), requests, model=MiniLMBaseline.name,
                                adapter=None, train_turns=len(train))
    print(f"{rate:.0f} turns/s (fitted on {len(train)} {args.dataset} train turns)")
    return 0


def _bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: our path and its baseline side by side")
    which = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    e = which.add_parser("engine", help="engine turns/s against transformers generate, and FLOP/s")
    e.add_argument("--limit", type=int, default=128, help="MELD test turns to time")
    e.add_argument("--data", help="data root (default: $DIALOGUELLM_DATA or ../shared/data)")
    e.add_argument("--no-levers", action="store_true",
                   help="skip the second engine start that measures prefix caching off")
    e.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    engine_arguments(e)
    e.set_defaults(run=run_bench_engine)
    t = which.add_parser("train", help="the plain training loop against the fast one, same MELD train examples")
    t.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when a GPU is visible, else cpu")
    t.add_argument("--limit", type=int, default=256, help="MELD train examples, one epoch each")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--recipe", default=str(DEFAULT_RECIPE),
                   help="training config whose model, LoRA and objective the fast loop uses (default: the shipped adapter's)")
    t.add_argument("--shape", choices=("llama2-7b", "smollm2-135m"),
                   help="time a model of this shape with random weights instead of the recipe's model")
    t.add_argument("--data", help="data root (default: $DIALOGUELLM_DATA or ../shared/data)")
    t.add_argument("--workdir", help="where a random model is written (default: the temp folder)")
    t.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    t.set_defaults(run=run_bench_train)
    _bench_stream(which)
    lb = which.add_parser("label", help="dialoguellm label over MELD test rows against the engine offline")
    lb.add_argument("--limit", type=int, help="first N MELD test rows (default: all 2,610)")
    lb.add_argument("--data", help="data root (default: $DIALOGUELLM_DATA or ../shared/data)")
    lb.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    engine_arguments(lb)
    lb.set_defaults(run=run_bench_label)
    v = which.add_parser("video", help="segment decoding in video actors against plain PyAV, and describer time")
    v.add_argument("--clips", type=int, default=4, help="generated clips of 30 s")
    v.add_argument("--workdir", help="where the clips are written (default: the temp folder)")
    v.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    v.set_defaults(run=run_bench_video)


def _bench_stream(which: argparse._SubParsersAction) -> None:
    from pipeline.stream.commands import worker_arguments

    s = which.add_parser("stream", help="end-to-end turns/s and latency through Redis and the worker, "
                                        "against the engine offline on the same prompts")
    s.add_argument("--limit", type=int, help="MELD test turns (default: all 2,610)")
    s.add_argument("--rate", type=float, help="push at this many turns/s (default: all at once)")
    s.add_argument("--data", help="data root (default: $DIALOGUELLM_DATA or ../shared/data)")
    s.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    worker_arguments(s)
    s.set_defaults(run=run_bench_stream, batch_size=128)


def run_bench_stream(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.stream_bench import new_stream_names, run_stream_benchmark, stream_requests
    from pipeline.stream.commands import start_pool, stream_config
    from pipeline.stream.embedded_redis import redis_or_embedded

    requests = stream_requests(args.data, args.context, args.limit)
    url, _server = redis_or_embedded(args.redis)
    config = stream_config(args, redis_url=url, **new_stream_names())
    pool = start_pool(args)
    try:
        result = run_stream_benchmark(pool, config, requests, args.rate)
    finally:
        pool.shutdown()
    if args.json:
        print(json.dumps(result))
    return 0


def run_bench_label(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.label_bench import run_label_benchmark

    manifest = DATASETS["meld"].locate("test", resolve_data_root(args.data))
    result = run_label_benchmark(engine_config(args), str(manifest), args.limit)
    if args.json:
        print(json.dumps(result))
    return 0


def run_bench_video(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.video_bench import run_video_benchmark

    result = run_video_benchmark(args.clips, workdir=args.workdir)
    if args.json:
        print(json.dumps(result))
    return 0


def run_bench_engine(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.engine_bench import run_engine_benchmark

    result = run_engine_benchmark(engine_config(args), args.limit, args.data, levers=not args.no_levers)
    if args.json:
        print(json.dumps(result))
    return 0


def run_bench_train(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.train_bench import run_train_benchmark

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = run_train_benchmark(args.limit, device, args.data, args.recipe, args.batch_size, args.shape, args.workdir)
    if args.json:
        print(json.dumps(result))
    return 0


def _train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a LoRA adapter with Ray Train (see training/configs/)")
    p.add_argument("--config", required=True, help="YAML training config")
    p.add_argument("--storage", help="Ray Train storage path (default: beside output_dir)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue exactly from a step checkpoint (<storage>/<run>/local-checkpoints/last-step)")
    p.add_argument("--overwrite", action="store_true", help="replace an output_dir this command did not write")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.train import fit

    summary = fit(load_config(args.config), args.storage, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps(summary))
    return 0


def _registry() -> tuple:
    from pipeline import video_commands as video
    from pipeline.labelling import commands as labelling
    from pipeline.stream import commands as stream

    return (_eval, _bench, _train, *stream.REGISTRY, *video.REGISTRY, *labelling.REGISTRY)


REGISTRY = _registry()
