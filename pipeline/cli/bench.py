"""`dialoguellm bench engine | train | stream | label | video | watch`: our path and its baseline in one run."""

from __future__ import annotations

import dataclasses
import json

from pipeline.cli import configs
from pipeline.cli.preflight import preflight


def _emit(config, result: dict) -> int:
    if config.json:
        print(json.dumps(result))
    return 0


def run_bench_engine(config: configs.BenchEngineConfig) -> int:
    from pipeline.benchmarks.engine_bench import run_engine_benchmark

    preflight(config)
    return _emit(config, run_engine_benchmark(config.engine, config.limit, config.data, levers=config.levers,
                                              conversations=config.conversations, repeats=config.repeats))


def run_bench_train(config: configs.BenchTrainConfig) -> int:
    import torch

    from pipeline.benchmarks.train_bench import run_train_benchmark

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return _emit(config, run_train_benchmark(config.limit, device, config.data, config.recipe, config.batch_size,
                                             config.shape, config.workdir))


def run_bench_stream(config: configs.BenchStreamConfig) -> int:
    from pipeline.benchmarks.engine_bench import with_prompt
    from pipeline.benchmarks.stream_bench import new_stream_names, run_stream_benchmark, stream_requests
    from pipeline.stream.embedded_redis import redis_or_embedded
    from workers.engine_pool import EnginePool

    url, _server = redis_or_embedded(config.stream.redis_url)
    preflight(dataclasses.replace(config, stream=dataclasses.replace(config.stream, redis_url=url)))
    results = {}
    for prompt in dict.fromkeys(config.compare_prompts):
        engine = with_prompt(config.engine, prompt)
        stream = dataclasses.replace(config.stream, redis_url=url, **new_stream_names())
        requests = stream_requests(config.data, engine.context_turns, config.limit, config.conversations)
        pool = EnginePool(engine, config.pool)
        try:
            results[prompt] = run_stream_benchmark(pool, stream, requests, config.rate)
        finally:
            pool.shutdown()
    if len(results) == 1:
        return _emit(config, next(iter(results.values())))
    first, *others = results
    for prompt in others:
        results[f"{prompt}_ratio"] = round(results[prompt]["stream_turns_per_s"]
                                           / results[first]["stream_turns_per_s"], 3)
    return _emit(config, results)


def run_bench_label(config: configs.BenchLabelConfig) -> int:
    from pipeline.benchmarks.label_bench import run_label_benchmark
    from pipeline.core.datasets import DATASETS, resolve_data_root

    preflight(config)
    manifest = DATASETS["meld"].locate("test", resolve_data_root(config.data))
    return _emit(config, run_label_benchmark(config.engine, str(manifest), config.limit))


def run_bench_video(config: configs.BenchVideoConfig) -> int:
    from pipeline.benchmarks.video_bench import run_video_benchmark

    return _emit(config, run_video_benchmark(config.clips, workdir=config.workdir))


def run_bench_watch(config: configs.BenchWatchConfig) -> int:
    from pipeline.benchmarks.watch_bench import run_watch_benchmark
    from pipeline.stream.embedded_redis import redis_or_embedded

    url, _server = redis_or_embedded(config.redis_url)
    return _emit(config, run_watch_benchmark(url, (config.conversations, config.baseline), config.turns,
                                             config.updates))


BENCHMARKS = {
    "engine": ("engine turns/s against transformers generate, FLOP/s, and the default adapter's speed against the "
               "bare model's", configs.BenchEngineConfig, run_bench_engine),
    "train": ("the plain training loop against the fast one, same MELD train examples", configs.BenchTrainConfig,
              run_bench_train),
    "stream": ("end-to-end turns/s and latency through Redis and the worker, against the engine offline on the "
               "same prompts", configs.BenchStreamConfig, run_bench_stream),
    "label": ("dialoguellm label over MELD test rows against the engine offline", configs.BenchLabelConfig,
              run_bench_label),
    "video": ("segment decoding in video actors against plain PyAV, and describer time", configs.BenchVideoConfig,
              run_bench_video),
    "watch": ("the watch page with 2,000 active conversations against 20: label to page time, page load, server "
              "memory (headless Chromium)", configs.BenchWatchConfig, run_bench_watch),
}
