"""`dialoguellm serve | push | tail | demo | replay`: the stream flows on the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
import uuid

from pipeline.cli import flags
from pipeline.cli.preflight import preflight
from pipeline.core.errors import ConfigError, DataError
from pipeline.stream.config import DEFAULT_IN_STREAM, DEFAULT_OUT_STREAM


def start_pools(checked) -> tuple:
    """(engine pool, video pool or None). Video actors start in seconds: started first, a machine
    too small for them and the engines is told so at once, not after the engines have loaded."""
    from workers.engine_pool import EnginePool
    from workers.video.actors import VideoPool

    videos = VideoPool(checked.video) if checked.video is not None else None
    try:
        return EnginePool(checked.engine, checked.pool), videos
    except BaseException:
        if videos is not None:
            videos.shutdown()
        raise


def serve_flags(p: argparse.ArgumentParser) -> None:
    flags.worker_flags(p)
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    p.add_argument("--log-format", choices=("json", "text"), default="json")


def run_serve(args: argparse.Namespace) -> int:
    from pipeline.core.logs import setup_logging
    from pipeline.stream.metrics import WorkerMetrics
    from pipeline.stream.runner import serve_until_signal

    setup_logging(args.log_format)
    checked = preflight(args)
    if checked.video is not None and checked.video.policy.opens_nothing:
        logging.getLogger("dialoguellm.stream").warning(
            "no --video-root or --video-allow: no video is opened; turns with video are labelled from their "
            "text, flagged no_description")
    pool, videos = start_pools(checked)
    try:
        serve_until_signal(checked.stream, pool, WorkerMetrics(), videos)
    finally:
        pool.shutdown()
        if videos is not None:
            videos.shutdown()
    return 0


def push_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a MELD-layout .csv or a .jsonl file of turns")
    flags.redis_flag(p)
    p.add_argument("--stream", default=DEFAULT_IN_STREAM, help="input stream (default: %(default)s)")
    p.add_argument("--conversation", action="append", help="only this conversation id (repeatable)")
    p.add_argument("--rate", type=float, help="turns per second (default: as fast as possible)")
    p.add_argument("--label-set", help="label set of a .jsonl file (default: meld)")
    p.add_argument("--adapter", help="adapter name to ask for (one the worker was started with)")


def run_push(args: argparse.Namespace) -> int:
    import redis

    from pipeline.core.datasets import load_file
    from pipeline.core.wire import TurnMessage
    from pipeline.stream.client import push_turns

    if args.rate is not None and args.rate <= 0:
        raise ConfigError(f"rate: must be > 0, got {args.rate}")
    conversations = load_file(args.file, args.label_set)
    if args.conversation:
        conversations = [c for c in conversations if c.conversation_id in set(args.conversation)]
        if not conversations:
            raise DataError(f"{args.file}: no conversation {', '.join(args.conversation)}")
    preflight(args, redis_keys=(args.stream,))
    messages = [TurnMessage.from_turn(t, c.label_set, args.adapter) for c in conversations for t in c.turns]
    start = time.perf_counter()
    push_turns(redis.Redis.from_url(args.redis_url), messages, args.stream, args.rate)
    print(f"pushed {len(messages)} turns of {len(conversations)} conversations to {args.stream} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def tail_flags(p: argparse.ArgumentParser) -> None:
    flags.redis_flag(p)
    p.add_argument("--stream", default=DEFAULT_OUT_STREAM, help="output stream (default: %(default)s)")
    p.add_argument("--from-start", action="store_true", help="print the labels already there first")
    p.add_argument("--count", type=int, help="stop after this many labels")
    p.add_argument("--idle-timeout", type=float, help="stop when no label came for this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON object a line")


def run_tail(args: argparse.Namespace) -> int:
    import redis

    from pipeline.stream.client import follow_labels
    from pipeline.stream.demo import format_label

    preflight(args, redis_keys=(args.stream,))
    client = redis.Redis.from_url(args.redis_url)
    for _, label in follow_labels(client, args.stream, args.from_start, args.count, args.idle_timeout):
        print(json.dumps(vars(label)) if args.json else format_label(label), flush=True)
    return 0


def demo_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conversation", default="1", help="MELD test Dialogue_ID (default: %(default)s)")
    p.add_argument("--watch", nargs="?", type=int, const=8765, metavar="PORT",
                   help="serve the watch page at http://127.0.0.1:PORT/ (default port 8765) while the demo runs")
    flags.data_flag(p)
    flags.worker_flags(p)


def run_demo(args: argparse.Namespace) -> int:
    from pipeline.core.datasets import load_dataset
    from pipeline.stream.demo import run_demo as demo
    from pipeline.stream.embedded_redis import redis_or_embedded
    from pipeline.stream.redis_checks import redact

    conversations = {c.conversation_id: c for c in load_dataset("meld", "test", args.data)}
    conversation = conversations.get(args.conversation)
    if conversation is None:
        raise DataError(f"MELD test has no conversation {args.conversation!r}")
    url, embedded = redis_or_embedded(args.redis_url)
    prefix = f"dialoguellm:demo:{uuid.uuid4().hex[:8]}"
    checked = preflight(args, redis_url=url, in_stream=f"{prefix}:turns", out_stream=f"{prefix}:labels",
                        dead_stream=None, claim_interval_ms=1000)
    print(f"redis: {'embedded server at ' + url if embedded else redact(url)}; streams {prefix}:*", flush=True)
    from workers.engine_pool import EnginePool

    with _watch_page(args.watch, checked.stream, f"{prefix}:alerts"):
        pool = EnginePool(checked.engine, checked.pool)  # the demo conversation has no video
        how = " (merged into the model)" if pool.merged else " (LoRA)" if pool.default_adapter else ""
        print(f"engine: {pool.model}, adapter {pool.default_adapter or 'none'}{how}", flush=True)
        try:
            demo(conversation, checked.stream, pool, lambda line: print(line, flush=True))
        finally:
            pool.shutdown()
    return 0


@contextlib.contextmanager
def _watch_page(port: int | None, stream, alerts_stream: str):
    """With a port: the watch page on the demo's streams, its address printed before the engine starts."""
    if port is None:
        yield
        return
    from pipeline.watch.config import WatchConfig
    from pipeline.watch.server import WatchServer

    # The demo's texts are MELD's, public: shown.
    config = WatchConfig(redis_url=stream.redis_url, labels_stream=stream.out_stream, alerts_stream=alerts_stream,
                         in_stream=stream.in_stream, port=port, show_text=True)
    with WatchServer(config) as page:
        print(f"watch: {page.url}", flush=True)
        yield


def replay_flags(p: argparse.ArgumentParser) -> None:
    flags.redis_flag(p)
    p.add_argument("--in-stream", dest="replay_in", default=DEFAULT_IN_STREAM, help="input stream (default: %(default)s)")
    p.add_argument("--dead-stream", dest="replay_dead", help="dead-letter stream (default: IN_STREAM:dead)")
    p.add_argument("--id", action="append", dest="ids", metavar="SOURCE_ID",
                   help="only the entry with this source_id (repeatable)")
    p.add_argument("--error-contains", metavar="TEXT", help="only entries whose error contains TEXT")
    p.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")


def run_replay(args: argparse.Namespace) -> int:
    import redis

    from pipeline.stream.replay import replay_dead_letters

    dead = args.replay_dead or f"{args.replay_in}:dead"
    ids = set(args.ids or ())

    def keep(letter) -> bool:
        return (not ids or letter.source_id in ids) and (args.error_contains or "") in letter.error

    preflight(args, redis_keys=(dead, args.replay_in))
    replayed = replay_dead_letters(redis.Redis.from_url(args.redis_url), dead, args.replay_in, keep, args.dry_run)
    for r in replayed:
        target = "(dry run)" if r.new_id is None else f"-> {r.new_id}"
        print(f"{r.source_id} {target}  was: {r.error}")
    print(f"{'would replay' if args.dry_run else 'replayed'} {len(replayed)} entries from {dead} to {args.replay_in}")
    return 0
