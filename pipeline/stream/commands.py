"""`dialoguellm serve | push | tail`, and the streaming demo: the stream flows on the command line."""

from __future__ import annotations

import argparse
import json
import time
import uuid

from pipeline.cli import engine_arguments, engine_config
from pipeline.errors import ConfigError, DataError
from pipeline.video_commands import start_video_pool, video_arguments
from pipeline.stream.config import DEFAULT_GROUP, DEFAULT_IN_STREAM, DEFAULT_OUT_STREAM, StreamConfig
from pipeline.stream.redis_checks import check_streams, connect, redact

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _redis_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", default=DEFAULT_REDIS, metavar="URL",
                   help="redis://[user:pass@]host:port/db, rediss:// for TLS, or unix:///path (default: %(default)s)")


def worker_arguments(p: argparse.ArgumentParser) -> None:
    _redis_argument(p)
    g = p.add_argument_group("streams")
    g.add_argument("--in-stream", default=DEFAULT_IN_STREAM, help="turns in (default: %(default)s)")
    g.add_argument("--out-stream", default=DEFAULT_OUT_STREAM, help="labels out (default: %(default)s)")
    g.add_argument("--dead-stream", help="dead letters (default: IN_STREAM:dead)")
    g.add_argument("--group", default=DEFAULT_GROUP, help="consumer group (default: %(default)s)")
    g.add_argument("--consumer", help="this worker's name in the group (default: HOST-PID)")
    g.add_argument("--batch-size", type=int, default=32, help="entries per micro-batch (default: %(default)s)")
    g.add_argument("--batch-wait-ms", type=int, default=50,
                   help="how long a micro-batch waits to fill after its first entry (default: %(default)s)")
    g.add_argument("--claim-idle-ms", type=int, default=60_000,
                   help="take over entries idle this long under another consumer (default: %(default)s)")
    g.add_argument("--claim-interval-ms", type=int, default=5_000, help="how often to look for them")
    g.add_argument("--max-deliveries", type=int, default=3,
                   help="attempts before an entry goes to the dead-letter stream (default: %(default)s)")
    g.add_argument("--max-text-chars", type=int, default=2000, help="longer texts are dead-lettered")
    g.add_argument("--context-ttl-s", type=int, default=24 * 3600,
                   help="how long a conversation's context outlives its last turn (default: a day)")
    p2 = p.add_argument_group("pool")
    p2.add_argument("--engines", type=int, default=1, help="engine actors (one GPU each on GPU nodes)")
    p2.add_argument("--max-inflight", type=int, default=2, help="batches in flight per engine")
    p2.add_argument("--gpus-per-engine", type=float, help="default: 1 when the Ray cluster has GPUs, else 0")
    p2.add_argument("--ray-address", help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    p2.add_argument("--video-actors", type=int, default=1, help="video decoder/describer actors")
    engine_arguments(p)
    video_arguments(p)


def stream_config(args: argparse.Namespace, **overrides) -> StreamConfig:
    """The validated `StreamConfig` from parsed flags."""
    from pipeline.stream.config import default_consumer

    fields = dict(
        redis_url=args.redis, in_stream=args.in_stream, out_stream=args.out_stream, dead_stream=args.dead_stream,
        group=args.group, consumer=args.consumer or default_consumer(), batch_size=args.batch_size,
        batch_wait_ms=args.batch_wait_ms, claim_idle_ms=args.claim_idle_ms,
        claim_interval_ms=args.claim_interval_ms, max_deliveries=args.max_deliveries,
        max_inflight_per_engine=args.max_inflight, max_text_chars=args.max_text_chars,
        context_turns=args.context, context_ttl_s=args.context_ttl_s,
        metrics_port=getattr(args, "metrics_port", None),
    )
    fields.update(overrides)
    return StreamConfig(**fields)


def start_pool(args: argparse.Namespace):
    """Check the model flags here (one-line errors), then start the engine actors."""
    from workers.adapters import check_adapter
    from workers.engine_pool import EnginePool, PoolConfig

    pool_config = PoolConfig(engines=args.engines, max_inflight_per_engine=args.max_inflight,
                             gpus_per_engine=args.gpus_per_engine, ray_address=args.ray_address)
    config = engine_config(args).with_default_adapter()
    for name, path in config.adapters.items():
        check_adapter(name, path, config.max_lora_rank)
    return EnginePool(config, pool_config)


def _serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="label turns from a Redis stream until SIGTERM")
    worker_arguments(p)
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from pipeline.logs import setup_logging
    from pipeline.stream.metrics import WorkerMetrics
    from pipeline.stream.runner import serve_until_signal

    setup_logging(args.log_format)
    config = stream_config(args)
    # Credentials and key types are checked before the engine spends a minute starting.
    check_streams(connect(config.redis_url), (config.in_stream, config.out_stream, config.dead_letter_stream),
                  config.redis_url)
    pool = start_pool(args)
    videos = start_video_pool(args, args.video_actors)
    try:
        serve_until_signal(config, pool, WorkerMetrics(), videos)
    finally:
        pool.shutdown()
        if videos is not None:
            videos.shutdown()
    return 0


def _push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="send a conversation file (MELD CSV or JSONL) turn by turn to the input stream")
    p.add_argument("file", help="a MELD-layout .csv or a .jsonl file of turns")
    _redis_argument(p)
    p.add_argument("--stream", default=DEFAULT_IN_STREAM, help="input stream (default: %(default)s)")
    p.add_argument("--conversation", action="append", help="only this conversation id (repeatable)")
    p.add_argument("--rate", type=float, help="turns per second (default: as fast as possible)")
    p.add_argument("--label-set", help="label set of a .jsonl file (default: meld)")
    p.add_argument("--adapter", help="adapter name to ask for (one the worker was started with)")
    p.set_defaults(run=run_push)


def run_push(args: argparse.Namespace) -> int:
    from pipeline.datasets import load_file
    from pipeline.wire import TurnMessage

    conversations = load_file(args.file, args.label_set)
    if args.conversation:
        conversations = [c for c in conversations if c.conversation_id in set(args.conversation)]
        if not conversations:
            raise DataError(f"{args.file}: no conversation {', '.join(args.conversation)}")
    if args.rate is not None and args.rate <= 0:
        raise ConfigError(f"rate: must be > 0, got {args.rate}")
    client = connect(args.redis)
    check_streams(client, (args.stream,), args.redis)
    messages = [TurnMessage.from_turn(t, c.label_set, args.adapter) for c in conversations for t in c.turns]
    start = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for n, message in enumerate(messages, start=1):
        pipe.xadd(args.stream, message.encode())
        if args.rate:
            pipe.execute()
            time.sleep(max(0.0, start + n / args.rate - time.perf_counter()))
        elif n % 500 == 0:
            pipe.execute()
    pipe.execute()
    print(f"pushed {len(messages)} turns of {len(conversations)} conversations to {args.stream} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def _tail(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tail", help="print labels from the output stream as they arrive")
    _redis_argument(p)
    p.add_argument("--stream", default=DEFAULT_OUT_STREAM, help="output stream (default: %(default)s)")
    p.add_argument("--from-start", action="store_true", help="print the labels already there first")
    p.add_argument("--count", type=int, help="stop after this many labels")
    p.add_argument("--idle-timeout", type=float, help="stop when no label came for this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(run=run_tail)


def run_tail(args: argparse.Namespace) -> int:
    from pipeline.stream.client import read_labels

    client = connect(args.redis)
    check_streams(client, (args.stream,), args.redis)
    after, seen, last = ("0" if args.from_start else "$"), 0, time.monotonic()
    while args.count is None or seen < args.count:
        batch = read_labels(client, args.stream, after, block_ms=1000, count=100)
        if not batch:
            if args.idle_timeout is not None and time.monotonic() - last > args.idle_timeout:
                break
            continue
        last = time.monotonic()
        for entry_id, label in batch[: None if args.count is None else args.count - seen]:
            print(json.dumps(vars(label)) if args.json else format_label(label), flush=True)
            seen += 1
        after = batch[-1][0]
    return 0


def format_label(label, gold: str | None = None, text: str | None = None) -> str:
    """One readable line for a label (the three most probable labels, flags, latency)."""
    top = "  ".join(f"{name} {p:.2f}" for name, p in sorted(label.probs.items(), key=lambda kv: -kv[1])[:3])
    parts = [f"{label.conversation_id}/{label.turn_id}", f"{label.label:<9}", top, f"{label.latency_ms:.0f} ms"]
    if gold:
        parts.insert(2, f"(gold {gold})")
    if label.flags:
        parts.append("[" + ",".join(label.flags) + "]")
    line = "  ".join(parts)
    return f"{line}\n    {text}" if text else line


def _demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the streaming worker end to end: push a MELD test conversation, "
                                    "print its labels as they arrive, stop")
    p.add_argument("--conversation", default="1", help="MELD test Dialogue_ID (default: %(default)s)")
    p.add_argument("--data", help="data root (default: $DIALOGUELLM_DATA or ../shared/data)")
    worker_arguments(p)
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import redis

    from pipeline.datasets import load_dataset
    from pipeline.stream.client import delete_keys, push_conversation, read_labels
    from pipeline.stream.embedded_redis import redis_or_embedded
    from pipeline.stream.runner import BackgroundWorker

    conversations = {c.conversation_id: c for c in load_dataset("meld", "test", args.data)}
    conv = conversations.get(args.conversation)
    if conv is None:
        raise DataError(f"MELD test has no conversation {args.conversation!r}")
    url, embedded = redis_or_embedded(args.redis)
    prefix = f"dialoguellm:demo:{uuid.uuid4().hex[:8]}"
    config = stream_config(args, redis_url=url, in_stream=f"{prefix}:turns", out_stream=f"{prefix}:labels",
                           dead_stream=None, claim_interval_ms=1000)
    client = redis.Redis.from_url(url)
    print(f"redis: {'embedded server at ' + url if embedded else redact(url)}; streams {prefix}:*", flush=True)
    pool = start_pool(args)
    print(f"engine: {pool.model}, adapter {pool.default_adapter or 'none'}", flush=True)
    try:
        with BackgroundWorker(config, pool) as worker:
            push_conversation(client, conv, config.in_stream)
            print(f"pushed MELD test conversation {conv.conversation_id} ({len(conv.turns)} turns)", flush=True)
            turns = {t.turn_id: t for t in conv.turns}
            after, seen, dead = "0", 0, 0
            while seen + dead < len(turns):
                dead = client.xlen(config.dead_letter_stream)
                worker.check()
                for after, label in read_labels(client, config.out_stream, after, block_ms=1000):
                    turn = turns[label.turn_id]
                    print(format_label(label, turn.label, f"{turn.speaker}: {turn.text}"), flush=True)
                    seen += 1
        print(f"worker stopped cleanly: {seen} turns labelled, {dead} dead-lettered", flush=True)
    finally:
        pool.shutdown()
        delete_keys(client, f"{prefix}:*")
    return 0


def _replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="put dead-lettered entries back on the input stream (after a fix)")
    _redis_argument(p)
    p.add_argument("--in-stream", default=DEFAULT_IN_STREAM, help="input stream (default: %(default)s)")
    p.add_argument("--dead-stream", help="dead-letter stream (default: IN_STREAM:dead)")
    p.add_argument("--id", action="append", dest="ids", metavar="SOURCE_ID",
                   help="only the entry with this source_id (repeatable)")
    p.add_argument("--error-contains", metavar="TEXT", help="only entries whose error contains TEXT")
    p.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")
    p.set_defaults(run=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    from pipeline.stream.replay import replay_dead_letters

    dead = args.dead_stream or f"{args.in_stream}:dead"
    ids = set(args.ids or ())

    def keep(letter) -> bool:
        return (not ids or letter.source_id in ids) and (args.error_contains or "") in letter.error

    client = connect(args.redis)
    check_streams(client, (dead, args.in_stream), args.redis)
    replayed = replay_dead_letters(client, dead, args.in_stream, keep, args.dry_run)
    for r in replayed:
        target = "(dry run)" if r.new_id is None else f"-> {r.new_id}"
        print(f"{r.source_id} {target}  was: {r.error}")
    print(f"{'would replay' if args.dry_run else 'replayed'} {len(replayed)} entries from {dead} to {args.in_stream}")
    return 0


REGISTRY = (_serve, _push, _tail, _demo, _replay)
