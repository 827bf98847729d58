"""`dialoguellm serve | push | tail | demo | replay | forget | corrections export`: the stream flows on the
command line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import uuid

from pipeline.cli.configs import (
    CorrectionsExportConfig,
    DemoConfig,
    ForgetConfig,
    PushConfig,
    ReplayConfig,
    ServeConfig,
    TailConfig,
)
from pipeline.cli.preflight import preflight
from pipeline.core.errors import DataError
from pipeline.stream.context_store import context_key


def start_pools(config: ServeConfig) -> tuple:
    """(engine pool, video pool or None). Video actors start in seconds: started first, a machine
    too small for them and the engines is told so at once, not after the engines have loaded."""
    from workers.engine_pool import EnginePool
    from workers.video.actors import VideoPool

    videos = VideoPool(config.video) if config.video.enabled else None
    try:
        return EnginePool(config.engine, config.pool), videos
    except BaseException:
        if videos is not None:
            videos.shutdown()
        raise


def run_serve(config: ServeConfig) -> int:
    from pipeline.core.logs import setup_logging
    from pipeline.stream.metrics import WorkerMetrics
    from pipeline.stream.runner import serve_until_signal

    setup_logging(config.log_format)
    preflight(config)
    if config.video.enabled and config.video.policy.opens_nothing:
        logging.getLogger("dialoguellm.stream").warning(
            "no --video-root or --video-allow: no video is opened; turns with video are labelled from their "
            "text, flagged no_description")
    pool, videos = start_pools(config)
    try:
        serve_until_signal(config.stream, pool, WorkerMetrics(), videos)
    finally:
        pool.shutdown()
        if videos is not None:
            videos.shutdown()
    return 0


def run_push(config: PushConfig) -> int:
    import redis

    from pipeline.core.datasets import load_file
    from pipeline.core.wire import TurnMessage
    from pipeline.stream.client import push_turns

    conversations = load_file(config.file, config.label_set)
    if config.conversation:
        conversations = [c for c in conversations if c.conversation_id in set(config.conversation)]
        if not conversations:
            raise DataError(f"{config.file}: no conversation {', '.join(config.conversation)}")
    preflight(config)
    messages = [TurnMessage.from_turn(t, c.label_set, config.adapter) for c in conversations for t in c.turns]
    start = time.perf_counter()
    push_turns(redis.Redis.from_url(config.redis_url), messages, config.stream, config.rate)
    print(f"pushed {len(messages)} turns of {len(conversations)} conversations to {config.stream} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def run_tail(config: TailConfig) -> int:
    import redis

    from pipeline.stream.client import follow_labels
    from pipeline.stream.demo import format_label

    preflight(config)
    client = redis.Redis.from_url(config.redis_url)
    for _, label in follow_labels(client, config.stream, config.from_start, config.count, config.idle_timeout):
        print(json.dumps(vars(label)) if config.json else format_label(label), flush=True)
    return 0


def run_demo_command(config: DemoConfig) -> int:
    from pipeline.core.datasets import load_dataset
    from pipeline.stream.demo import decision_note, run_demo
    from pipeline.stream.embedded_redis import redis_or_embedded
    from pipeline.stream.redis_checks import redact
    from workers.adapters import read_adapter_meta
    from workers.engine_pool import EnginePool

    conversations = {c.conversation_id: c for c in load_dataset("meld", "test", config.data)}
    conversation = conversations.get(config.conversation)
    if conversation is None:
        raise DataError(f"MELD test has no conversation {config.conversation!r}")
    url, embedded = redis_or_embedded(config.stream.redis_url)
    prefix = f"dialoguellm:demo:{uuid.uuid4().hex[:8]}"
    stream = dataclasses.replace(config.stream, redis_url=url, in_stream=f"{prefix}:turns",
                                 out_stream=f"{prefix}:labels", dead_stream=None)
    preflight(dataclasses.replace(config, stream=stream))
    print(f"redis: {'embedded server at ' + url if embedded else redact(url)}; streams {prefix}:*", flush=True)
    with _watch_page(config.watch, stream, f"{prefix}:alerts"):
        pool = EnginePool(config.engine, config.pool)  # the demo conversation has no video
        how = " (merged into the model)" if pool.merged else " (LoRA)" if pool.default_adapter else ""
        print(f"engine: {pool.model}, adapter {pool.default_adapter or 'none'}{how}", flush=True)
        path = pool.served.get(pool.default_adapter) if pool.default_adapter else None
        note = decision_note(read_adapter_meta(path).decision_weights.get(conversation.label_set) if path else None)
        if note:
            print(note, flush=True)
        try:
            run_demo(conversation, stream, pool, lambda line: print(line, flush=True))
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


def run_replay(config: ReplayConfig) -> int:
    import redis

    from pipeline.stream.replay import replay_dead_letters

    ids = set(config.ids)

    def keep(letter) -> bool:
        return (not ids or letter.source_id in ids) and (config.error_contains or "") in letter.error

    preflight(config)
    dead = config.dead_letter_stream
    replayed = replay_dead_letters(redis.Redis.from_url(config.redis_url), dead, config.in_stream, keep,
                                   config.dry_run)
    for r in replayed:
        target = "(dry run)" if r.new_id is None else f"-> {r.new_id}"
        print(f"{r.source_id} {target}  was: {r.error}")
    print(f"{'would replay' if config.dry_run else 'replayed'} {len(replayed)} entries from {dead} to "
          f"{config.in_stream}")
    return 0


def run_forget(config: ForgetConfig) -> int:
    import redis

    from pipeline.stream.forget import forget_conversations

    preflight(config)
    done = forget_conversations(redis.Redis.from_url(config.redis_url), [config.conversation], config.in_stream,
                                config.streams, config.dry_run)
    verb = "would delete" if config.dry_run else "deleted"
    for f in done:
        entries = ", ".join(f"{n} in {stream}" for stream, n in f.entries.items()) or "no stream entries"
        print(f"{f.conversation_id}: {verb} {f.context_turns} stored turns "
              f"({context_key(config.in_stream, f.conversation_id)}), entries: {entries}")
    return 0


def run_corrections_export(config: CorrectionsExportConfig) -> int:
    import redis

    from pipeline.core.corrections import build_export, latest_corrections, write_export
    from pipeline.core.redaction import redactor
    from pipeline.stream.corrections import read_corrections, stored_turns

    preflight(config)
    client = redis.Redis.from_url(config.redis_url)
    messages, unreadable = read_corrections(client, config.corrections_stream)
    latest = latest_corrections(messages)
    label_sets = sorted({m.label_set for m in latest.values()})
    label_set = config.label_set or (label_sets[0] if len(label_sets) == 1 else None)
    if label_set is None:
        raise DataError(f"{config.corrections_stream}: " + (
            "no corrections to export" if not label_sets else
            f"corrections of several label sets ({', '.join(label_sets)}): pick one with --label-set"))
    stored = stored_turns(client, config.in_stream, {cid for cid, _ in latest})
    redact = (lambda text: text) if config.raw_text else redactor(config.redaction)
    export = build_export(latest, label_set, config.dev_share, redact, stored)
    write_export(export, config.out, {"dev_share": config.dev_share, "redacted": not config.raw_text,
                                      "stream": config.corrections_stream, "corrections_read": len(messages)})
    print(f"{len(messages)} corrections read ({len(latest)} turns, the last correction of each), label set "
          f"{label_set}: train {export.corrected['train']} corrected turns in {export.conversations['train']} "
          f"conversations, dev {export.corrected['dev']} in {export.conversations['dev']}"
          + (f"; {export.without_text} left out (no text kept)" if export.without_text else "")
          + (f"; {unreadable} unreadable entries skipped" if unreadable else "")
          + "".join(f"; {n} of label set {name} not exported" for name, n in export.other_label_sets.items()))
    print(f"wrote {config.out}/train.jsonl, dev.jsonl, manifest.json" + (" (texts UNREDACTED)" if config.raw_text else ""))
    return 0
