"""`dialoguellm bench engine | train | stream | label | video | watch`: our path and its baseline in one run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.cli import flags
from pipeline.cli.preflight import preflight

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "training" / "configs" / "smollm2-135m-cpu.yaml"


def bench_flags(p: argparse.ArgumentParser) -> None:
    which = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    e = which.add_parser("engine", help="engine turns/s against transformers generate, FLOP/s, and the default "
                                        "adapter's speed against the bare model's")
    e.add_argument("--limit", type=int, default=128, help="MELD test turns to time")
    e.add_argument("--no-levers", action="store_true",
                   help="skip the second engine start that measures prefix caching off")
    flags.data_flag(e)
    flags.json_flag(e)
    flags.model_flags(e)
    e.set_defaults(run=run_bench_engine)

    t = which.add_parser("train", help="the plain training loop against the fast one, same MELD train examples")
    t.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when a GPU is visible, else cpu")
    t.add_argument("--limit", type=int, default=256, help="MELD train examples, one epoch each")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--recipe", default=str(DEFAULT_RECIPE),
                   help="training config whose model, LoRA and objective the fast loop uses (default: the shipped adapter's)")
    t.add_argument("--shape", choices=("llama2-7b", "smollm2-135m"),
                   help="time a model of this shape with random weights instead of the recipe's model")
    t.add_argument("--workdir", help="where a random model is written (default: the temp folder)")
    flags.data_flag(t)
    flags.json_flag(t)
    t.set_defaults(run=run_bench_train)

    s = which.add_parser("stream", help="end-to-end turns/s and latency through Redis and the worker, "
                                        "against the engine offline on the same prompts")
    s.add_argument("--limit", type=int, help="MELD test turns (default: all 2,610)")
    s.add_argument("--rate", type=float, help="push at this many turns/s (default: all at once)")
    flags.data_flag(s)
    flags.json_flag(s)
    flags.worker_flags(s)
    s.set_defaults(run=run_bench_stream, batch_size=128, describer="none")

    lb = which.add_parser("label", help="dialoguellm label over MELD test rows against the engine offline")
    lb.add_argument("--limit", type=int, help="first N MELD test rows (default: all 2,610)")
    flags.data_flag(lb)
    flags.json_flag(lb)
    flags.model_flags(lb)
    lb.set_defaults(run=run_bench_label)

    v = which.add_parser("video", help="segment decoding in video actors against plain PyAV, and describer time")
    v.add_argument("--clips", type=int, default=4, help="generated clips of 30 s")
    v.add_argument("--workdir", help="where the clips are written (default: the temp folder)")
    flags.json_flag(v)
    v.set_defaults(run=run_bench_video)

    w = which.add_parser("watch", help="the watch page with 2,000 active conversations against 20: label to page "
                                       "time, page load, server memory (headless Chromium)")
    w.add_argument("--conversations", type=int, default=2000, help="active conversations on the page")
    w.add_argument("--baseline", type=int, default=20, help="active conversations of the baseline run")
    w.add_argument("--turns", type=int, default=10, help="labelled turns per conversation")
    w.add_argument("--updates", type=int, default=20, help="labels timed from XADD to the page")
    flags.redis_flag(w)
    flags.json_flag(w)
    w.set_defaults(run=run_bench_watch)


def _emit(args: argparse.Namespace, result: dict) -> int:
    if args.json:
        print(json.dumps(result))
    return 0


def run_bench_engine(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.engine_bench import run_engine_benchmark

    return _emit(args, run_engine_benchmark(preflight(args).engine, args.limit, args.data, levers=not args.no_levers))


def run_bench_train(args: argparse.Namespace) -> int:
    import torch

    from pipeline.benchmarks.train_bench import run_train_benchmark

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return _emit(args, run_train_benchmark(args.limit, device, args.data, args.recipe, args.batch_size, args.shape,
                                           args.workdir))


def run_bench_stream(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.stream_bench import new_stream_names, run_stream_benchmark, stream_requests
    from pipeline.stream.embedded_redis import redis_or_embedded
    from workers.engine_pool import EnginePool

    url, _server = redis_or_embedded(args.redis_url)
    checked = preflight(args, redis_url=url, **new_stream_names())
    requests = stream_requests(args.data, checked.engine.context_turns, args.limit)
    pool = EnginePool(checked.engine, checked.pool)
    try:
        return _emit(args, run_stream_benchmark(pool, checked.stream, requests, args.rate))
    finally:
        pool.shutdown()


def run_bench_label(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.label_bench import run_label_benchmark
    from pipeline.core.datasets import DATASETS, resolve_data_root

    manifest = DATASETS["meld"].locate("test", resolve_data_root(args.data))
    return _emit(args, run_label_benchmark(preflight(args).engine, str(manifest), args.limit))


def run_bench_video(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.video_bench import run_video_benchmark

    return _emit(args, run_video_benchmark(args.clips, workdir=args.workdir))


def run_bench_watch(args: argparse.Namespace) -> int:
    from pipeline.benchmarks.watch_bench import run_watch_benchmark
    from pipeline.stream.embedded_redis import redis_or_embedded

    url, _server = redis_or_embedded(args.redis_url)
    return _emit(args, run_watch_benchmark(url, (args.conversations, args.baseline), args.turns, args.updates))
