"""The streaming worker against the real Redis at 127.0.0.1:6379, real Ray and a real vLLM engine.

Every test uses streams of its own (`test:<random>:*`) and deletes its keys afterwards.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import replace

import msgpack
import pytest

from pipeline.core.turns import VideoSegment
from pipeline.core.wire import PAYLOAD, DeadLetter, LabelMessage, TurnMessage
from pipeline.stream.client import push_turn, read_labels
from pipeline.stream.config import StreamConfig

redis = pytest.importorskip("redis")

from conftest import REDIS_URL  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.engine


@pytest.fixture(scope="session")
def pool(tiny_model, tiny_adapter):
    """A real Ray engine pool: one actor holding a vLLM engine over the tiny model."""
    import ray

    from workers.engine_config import EngineConfig
    from workers.engine_pool import EnginePool, PoolConfig

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    pool = EnginePool(EngineConfig(model=str(tiny_model), adapters={"tiny": str(tiny_adapter)}, max_model_len=256,
                                   max_lora_rank=8, kv_cache_gib=1), PoolConfig(engines=1))
    yield pool
    pool.shutdown()


class RecordingPool:
    """The real pool, recording the requests it is asked to label (a spy, not a fake)."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.requests = []

    def __getattr__(self, name):
        return getattr(self.pool, name)

    async def label(self, requests):
        self.requests += requests
        return await self.pool.label(requests)


def config(prefix: str, **changes) -> StreamConfig:
    fields = dict(redis_url=REDIS_URL, in_stream=f"{prefix}:turns", out_stream=f"{prefix}:labels", consumer="a",
                  batch_wait_ms=20, claim_interval_ms=500)
    return StreamConfig(**{**fields, **changes})


def worker(cfg: StreamConfig, pool):
    from pipeline.stream.runner import BackgroundWorker

    return BackgroundWorker(cfg, pool)


def wait_for(r, cfg: StreamConfig, n: int, timeout: float = 300, running=None) -> None:
    deadline = time.monotonic() + timeout
    while r.xlen(cfg.out_stream) + r.xlen(cfg.dead_letter_stream) < n:
        if running is not None:
            running.check()
        assert time.monotonic() < deadline, f"only {r.xlen(cfg.out_stream)} labels and " \
                                            f"{r.xlen(cfg.dead_letter_stream)} dead letters of {n} in {timeout} s"
        time.sleep(0.1)


def outputs(r, cfg: StreamConfig) -> tuple[list[LabelMessage], list[DeadLetter]]:
    labels = [LabelMessage.decode(f) for _, f in r.xrange(cfg.out_stream)]
    dead = [DeadLetter.decode(f) for _, f in r.xrange(cfg.dead_letter_stream)]
    return labels, dead


def assert_exactly_once(r, cfg: StreamConfig, ids: list[str]) -> tuple[list[LabelMessage], list[DeadLetter]]:
    labels, dead = outputs(r, cfg)
    seen = Counter([x.source_id for x in labels] + [x.source_id for x in dead])
    assert not set(ids) - set(seen), f"lost: {len(set(ids) - set(seen))}"
    assert [i for i, n in seen.items() if n > 1] == [], "doubled"
    assert set(seen) == set(ids)
    return labels, dead


def push_many(r, stream: str, messages: list) -> list[str]:
    """XADD in pipelined chunks; each message is a TurnMessage or raw entry fields."""
    ids = []
    for start in range(0, len(messages), 500):
        pipe = r.pipeline(transaction=False)
        for m in messages[start:start + 500]:
            pipe.xadd(stream, m.encode() if isinstance(m, TurnMessage) else m)
        ids += [i.decode() for i in pipe.execute()]
    return ids


def meld_messages(data_root, n: int, turns_per_conversation: int = 10) -> list[TurnMessage]:
    from pipeline.core.datasets import load_dataset

    texts = [t for c in load_dataset("meld", "test", data_root) for t in c.turns]
    return [TurnMessage(f"c{i // turns_per_conversation}", i % turns_per_conversation, texts[i % len(texts)].speaker,
                        texts[i % len(texts)].text) for i in range(n)]


CONVERSATION = [("Ann", "I got the job!"), ("Bob", "No way, that's amazing."), ("Ann", "I start on Monday."),
                ("Bob", "We have to celebrate tonight."), ("Ann", "But I'm so nervous."), ("Bob", "You'll be great.")]


def test_a_conversation_gets_one_label_per_turn_with_its_context(r, prefix, pool, engine):
    cfg = config(prefix)
    spy = RecordingPool(pool)
    with worker(cfg, spy) as w:
        ids = [push_turn(r, "call-1", k, who, text, stream=cfg.in_stream) for k, (who, text) in enumerate(CONVERSATION)]
        wait_for(r, cfg, len(ids))
        got = read_labels(r, cfg.out_stream, block_ms=1000)
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert dead == [] and [entry_id for entry_id, _ in got] == [i.decode() for i, _ in r.xrange(cfg.out_stream)]
    by_turn = {x.turn_id: x for x in labels}
    assert sorted(by_turn) == list(range(len(CONVERSATION)))
    for k, label in by_turn.items():
        assert label.source_id == ids[k] and label.conversation_id == "call-1"
        assert label.model == pool.model and label.adapter is None and label.flags == []
        assert label.label_set == "meld"  # what a correction of it checks the corrected label against
        assert set(label.probs) == {"neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"}
        assert abs(sum(label.probs.values()) - 1) < 1e-3 and label.probs[label.label] == label.confidence
        assert label.latency_ms > 0
    # The prompt of turn k holds turns k-2 and k-1, read from Redis.
    requests = {q.turn.turn_id: q for q in spy.requests}
    for k in range(len(CONVERSATION)):
        assert [t.text for t in requests[k].context] == [text for _, text in CONVERSATION[max(0, k - 2):k]]
        prompt = engine.prompter.build(requests[k])
        assert all(f"{who}: {text}" in prompt for who, text in CONVERSATION[max(0, k - 2):k])
    assert w.metrics.registry.get_sample_value("dialoguellm_turns_labelled_total") == len(CONVERSATION)
    assert w.metrics.registry.get_sample_value("dialoguellm_batch_size_count") >= 1


CALL = [("Customer", "My parcel never arrived."), ("Agent", "I'm sorry to hear that, let me check."),
        ("Customer", "It was due on Monday!"), ("Agent", "It is at the depot and comes tomorrow."),
        ("Customer", "Finally. Thank you."), ("Agent", "Is there anything else I can do?")]
CUSTOMERS = "(?i)^customer$"


def assert_customers_labelled_agents_context(labels: list[LabelMessage], call=CALL) -> None:
    """Customers' turns carry an emotion; agents' are flagged context_only with no label at all."""
    by_turn = {x.turn_id: x for x in labels}
    assert sorted(by_turn) == list(range(len(call)))
    for k, (who, _) in enumerate(call):
        x = by_turn[k]
        assert x.speaker == who and x.conversation_id == "call-m"
        if who == "Customer":
            assert x.flags == [] and not x.context_only and x.probs[x.label] == x.confidence
            assert abs(sum(x.probs.values()) - 1) < 1e-3
        else:
            assert x.flags == ["context_only"] and x.context_only
            assert (x.label, x.confidence, x.probs, x.adapter) == (None, None, {}, None)


def test_with_label_speakers_only_customers_are_labelled_and_agents_are_context(r, prefix, pool, engine):
    cfg = config(prefix, label_speakers=CUSTOMERS)
    spy = RecordingPool(pool)
    with worker(cfg, spy) as w:
        ids = [push_turn(r, "call-m", k, who, text, stream=cfg.in_stream,
                         # an agent's video: never described (nor would a customer's be without a describer)
                         video=VideoSegment("agent-camera.mp4", 0, 2) if k == 3 else None)
               for k, (who, text) in enumerate(CALL)]
        wait_for(r, cfg, len(ids))
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert dead == []
    assert_customers_labelled_agents_context(labels)
    # Only the customers' turns reached the engine, and each prompt shows the agent's turns before it.
    requests = {q.turn.turn_id: q for q in spy.requests}
    assert sorted(requests) == [0, 2, 4] and len(spy.requests) == 3
    z = pool.context_turns
    for k in (2, 4):
        assert [(t.speaker, t.text) for t in requests[k].context] == CALL[max(0, k - z):k]
        assert f"Agent: {CALL[k - 1][1]}" in engine.prompter.build(requests[k])
    value = w.metrics.registry.get_sample_value
    assert value("dialoguellm_turns_labelled_total") == 3 and value("dialoguellm_turns_context_only_total") == 3


def test_serve_with_label_speakers_labels_the_customers_and_flags_the_agents(r, prefix, tiny_model, run_cli):
    """The issue's "Must show": `serve --label-speakers '(?i)^customer$'` on a two-speaker conversation."""
    cfg = config(prefix, consumer="speakers")
    ids = [push_turn(r, "call-m", k, who, text, stream=cfg.in_stream) for k, (who, text) in enumerate(CALL)]
    args = [sys.executable, "-m", "pipeline.cli", "serve", "--redis", cfg.redis_url, "--in-stream", cfg.in_stream,
            "--out-stream", cfg.out_stream, "--consumer", cfg.consumer, "--model", str(tiny_model),
            "--max-model-len", "256", "--kv-cache-gib", "0.5", "--label-speakers", CUSTOMERS]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        while r.xlen(cfg.out_stream) + r.xlen(cfg.dead_letter_stream) < len(ids):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "serve labelled nothing in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert dead == [] and len(labels) == len(ids) == 6
    assert_customers_labelled_agents_context(labels)
    tailed = run_cli("tail", "--redis", REDIS_URL, "--stream", cfg.out_stream, "--from-start", "--count", "6",
                     timeout=60)
    assert tailed.returncode == 0, tailed.stderr
    print(tailed.stdout)
    lines = {int(line.split()[0].split("/")[1]): line for line in tailed.stdout.splitlines()}
    assert sorted(lines) == list(range(6))
    assert all("(context only: Agent not labelled)" in lines[k] and "[context_only]" in lines[k] for k in (1, 3, 5))
    assert not any("context" in lines[k] for k in (0, 2, 4))


def test_context_written_by_one_worker_is_read_by_another(r, prefix, pool, engine):
    first, second = config(prefix, consumer="a"), config(prefix, consumer="b")
    with worker(first, pool):
        for k in (0, 1, 2):
            push_turn(r, "call-2", k, *CONVERSATION[k], stream=first.in_stream)
        wait_for(r, first, 3)
    spy = RecordingPool(pool)
    with worker(second, spy):
        push_turn(r, "call-2", 3, *CONVERSATION[3], stream=second.in_stream)
        wait_for(r, second, 4)
    [request] = spy.requests
    assert [(t.speaker, t.text) for t in request.context] == CONVERSATION[1:3]
    assert f"{CONVERSATION[1][0]}: {CONVERSATION[1][1]}" in engine.prompter.build(request)


def test_a_turn_ahead_of_its_context_or_without_description_is_labelled_and_flagged(r, prefix, pool):
    cfg = config(prefix)
    with worker(cfg, pool):
        push_turn(r, "call-3", 0, *CONVERSATION[0], stream=cfg.in_stream)
        push_turn(r, "call-3", 3, *CONVERSATION[3], stream=cfg.in_stream)
        wait_for(r, cfg, 2)
        push_turn(r, "call-3", 1, *CONVERSATION[1], stream=cfg.in_stream)
        push_turn(r, "call-3", 2, *CONVERSATION[2], stream=cfg.in_stream)
        push_turn(r, "call-3", 4, "Ann", "Look at this.", stream=cfg.in_stream, video=VideoSegment("gone.mp4", 0, 1))
        wait_for(r, cfg, 5)
    flags = {x.turn_id: x.flags for x in outputs(r, cfg)[0]}
    # A video no describer turned into words: labelled all the same, flagged.
    assert flags == {0: [], 3: ["partial_context"], 1: [], 2: [], 4: ["no_description"]}


MALFORMED = [
    ({b"payload": b"\xc1 not msgpack"}, "payload is not msgpack"),
    ({b"text": b"no payload field"}, "no 'payload' field"),
    ({PAYLOAD: msgpack.packb({"conversation_id": "x", "turn_id": 0, "speaker": "A"})}, "missing field 'text'"),
    ({PAYLOAD: msgpack.packb({"conversation_id": "x", "turn_id": "0", "speaker": "A", "text": "hi"})},
     "field 'turn_id' must be an integer"),
    ({PAYLOAD: msgpack.packb({"conversation_id": "x", "turn_id": 0, "speaker": "A", "text": " "})}, "text is empty"),
    ({PAYLOAD: msgpack.packb({"conversation_id": "x", "turn_id": 0, "speaker": "A", "text": "y" * 3000})},
     "text has 3000 characters"),
    ({PAYLOAD: msgpack.packb({"conversation_id": "x", "turn_id": 0, "speaker": "A", "text": "hi",
                              "adapter": "/tmp/evil-adapter"})}, "unknown adapter '/tmp/evil-adapter'"),
    ({PAYLOAD: msgpack.packb({"conversation_id": "x", "turn_id": 0, "speaker": "A", "text": "hi",
                              "label_set": "nope"})}, "unknown label_set 'nope'"),
    ({PAYLOAD: msgpack.packb([1, 2, 3])}, "payload is a msgpack list"),
    ({PAYLOAD: msgpack.packb({"conversation_id": "x", "turn_id": 0, "speaker": "A", "text": "word " * 390})},
     "alone takes"),
]


def test_malformed_entries_are_dead_lettered_and_the_rest_labelled(r, prefix, pool, data_root):
    cfg = config(prefix, batch_size=64)
    good = meld_messages(data_root, 1000)
    bad = [MALFORMED[i % len(MALFORMED)] for i in range(100)]
    mixed = [(m, None) for m in good] + bad
    random.Random(0).shuffle(mixed)
    ids = push_many(r, cfg.in_stream, [m for m, _ in mixed])
    with worker(cfg, pool) as w:
        wait_for(r, cfg, len(ids))
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert len(labels) == 1000 and len(dead) == 100
    expected = {i: (m, reason) for i, (m, reason) in zip(ids, mixed) if reason}
    for letter in dead:
        entry, reason = expected[letter.source_id]
        assert reason in letter.error, (reason, letter.error)
        assert letter.deliveries == 1
        assert letter.payload == entry.get(PAYLOAD, letter.payload)
    assert w.metrics.registry.get_sample_value("dialoguellm_dead_lettered_total") == 100


POISON = "this turn makes the engine fail"


class PoisonedPool(RecordingPool):
    """FAULT INJECTED (a turn that makes a real engine fail cannot be produced on demand): the
    real pool, except that a call holding the marked turn raises as a failing engine would, and
    on the turn's last allowed delivery the call is cancelled under the worker (as when it loses
    its engine mid-call), so nothing is committed and the entry comes back past the limit."""

    def __init__(self, pool, max_deliveries: int) -> None:
        super().__init__(pool)
        self.max_deliveries = max_deliveries
        self.alone = 0  # calls holding the poison turn alone: one per delivery

    async def label(self, requests):
        import asyncio

        if any(q.turn.text == POISON for q in requests):
            self.alone += len(requests) == 1
            if len(requests) == 1 and self.alone == self.max_deliveries:
                raise asyncio.CancelledError
            raise RuntimeError("injected fault: the engine failed on this turn")
        return await super().label(requests)


def test_a_poison_turn_is_dead_lettered_with_the_engines_error_and_the_rest_labelled(r, prefix, pool, data_root):
    cfg = config(prefix, batch_size=16, max_deliveries=2, claim_idle_ms=400, claim_interval_ms=200)
    messages = meld_messages(data_root, 40)
    messages[17] = replace(messages[17], text=POISON)
    poisoned = PoisonedPool(pool, cfg.max_deliveries)
    ids = push_many(r, cfg.in_stream, messages)
    with worker(cfg, poisoned) as w:
        wait_for(r, cfg, len(ids), timeout=120, running=w)
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert len(labels) == 39 and [d.source_id for d in dead] == [ids[17]]
    # It came back once more than allowed, and its dead letter says what the engine said.
    assert dead[0].deliveries == cfg.max_deliveries + 1
    assert "more than the limit of 2" in dead[0].error
    assert "RuntimeError: injected fault: the engine failed on this turn" in dead[0].error
    # The turns batched with it were labelled at once, from the split batch.
    assert {q.turn.text for q in poisoned.requests} == {m.text for m in messages} - {POISON}


def test_dropped_redis_connections_lose_and_double_nothing(r, prefix, pool, data_root):
    from pipeline.stream.runner import worker_client_name

    cfg = config(prefix, batch_size=32, claim_idle_ms=2000)
    ids = push_many(r, cfg.in_stream, meld_messages(data_root, 1500))
    kills = 0
    with worker(cfg, pool) as w:
        deadline = time.monotonic() + 300
        while r.xlen(cfg.out_stream) + r.xlen(cfg.dead_letter_stream) < len(ids):
            assert time.monotonic() < deadline
            for c in r.client_list():
                if c.get("name") == worker_client_name(cfg) and kills < 20:
                    r.client_kill_filter(_id=c["id"])
                    kills += 1
            time.sleep(0.2)
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert kills >= 3 and dead == []
    assert w.metrics.registry.get_sample_value("dialoguellm_redis_errors_total") > 0


def test_a_flood_of_10000_entries_is_labelled_once_each(r, prefix, pool, data_root):
    cfg = config(prefix, batch_size=256, batch_wait_ms=50)
    ids = push_many(r, cfg.in_stream, meld_messages(data_root, 10_000))
    start = time.monotonic()
    with worker(cfg, pool):
        wait_for(r, cfg, len(ids), timeout=900)
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert len(labels) == 10_000 and dead == []
    print(f"10,000 entries in {time.monotonic() - start:.0f} s")


def test_with_every_engine_gone_turns_stay_pending_and_nothing_is_acknowledged(r, prefix, tiny_model, pool):
    """The fault is real: the only engine actor is killed for good (no restart)."""
    import ray

    from workers.engine_config import EngineConfig
    from workers.engine_pool import EnginePool

    broken = EnginePool(EngineConfig(model=str(tiny_model), max_model_len=256, kv_cache_gib=0.25))
    ray.kill(broken.actors.actors[0], no_restart=True)
    cfg = config(prefix, max_deliveries=3, claim_idle_ms=300, claim_interval_ms=200)
    ids = [push_turn(r, "call-4", k, *CONVERSATION[k], stream=cfg.in_stream) for k in range(3)]
    try:
        with worker(cfg, broken) as w:
            time.sleep(5)  # many claim rounds: the turns are not dead-lettered, only waiting
            assert r.xlen(cfg.out_stream) == 0 and r.xlen(cfg.dead_letter_stream) == 0
            assert r.xpending(cfg.in_stream, cfg.group)["pending"] == 3
        # Stopped: the waiting batches were let go, still unacknowledged, for a later worker.
        assert r.xpending(cfg.in_stream, cfg.group)["pending"] == 3
        assert w.metrics.registry.get_sample_value("dialoguellm_engines_alive") == 0
    finally:
        broken.shutdown()
    with worker(config(prefix, consumer="b", claim_idle_ms=300, claim_interval_ms=200), pool):
        wait_for(r, cfg, 3, timeout=120)
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert len(labels) == 3 and dead == []


def _serve(cfg: StreamConfig, tiny_model, metrics_port: int | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipeline.cli", "serve", "--redis", cfg.redis_url, "--in-stream", cfg.in_stream,
            "--out-stream", cfg.out_stream, "--consumer", cfg.consumer, "--batch-size", str(cfg.batch_size),
            "--model", str(tiny_model), "--max-model-len", "256", "--kv-cache-gib", "0.5"]
    if metrics_port:
        args += ["--metrics-port", str(metrics_port)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen(args, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pending_of(r, cfg: StreamConfig, consumer: str) -> int:
    return sum(c["pending"] for c in r.xinfo_consumers(cfg.in_stream, cfg.group) if c["name"].decode() == consumer)


def _wait_for_progress(r, cfg: StreamConfig, proc: subprocess.Popen, more: int, timeout: float = 240) -> None:
    target = r.xlen(cfg.out_stream) + more
    deadline = time.monotonic() + timeout
    while r.xlen(cfg.out_stream) < target:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "worker made no progress"
        time.sleep(0.05)


def test_sigterm_finishes_in_flight_and_sigkill_is_recovered_by_another_worker(r, prefix, pool, tiny_model,
                                                                              data_root):
    cfg = config(prefix, batch_size=64)
    ids = push_many(r, cfg.in_stream, meld_messages(data_root, 4000))

    # SIGTERM: stop reading, finish and acknowledge what is in flight, exit 0.
    port = _free_port()
    first = _serve(config(prefix, consumer="w1", batch_size=64), tiny_model, metrics_port=port)
    _wait_for_progress(r, cfg, first, 200)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert "dialoguellm_turns_labelled_total" in metrics and "dialoguellm_engine_queue_depth" in metrics
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 0, first.stderr.read()[-3000:]
    assert _pending_of(r, cfg, "w1") == 0

    # SIGKILL in the middle of a batch: its entries stay pending under its name...
    second = _serve(config(prefix, consumer="w2", batch_size=64), tiny_model)
    _wait_for_progress(r, cfg, second, 200)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait(timeout=30)
    assert _pending_of(r, cfg, "w2") > 0

    # ... until another worker claims them once they have been idle long enough.
    third = config(prefix, consumer="w3", batch_size=128, claim_idle_ms=1000)
    with worker(third, pool) as w:
        wait_for(r, cfg, len(ids), timeout=600)
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert dead == [] and w.metrics.registry.get_sample_value("dialoguellm_claimed_total") > 0
    assert r.xpending(cfg.in_stream, cfg.group)["pending"] == 0


def test_push_and_tail_on_the_command_line(r, prefix, pool, run_cli):
    cfg = config(prefix)
    with worker(cfg, pool):
        pushed = run_cli("push", "tests/data/conversations.jsonl", "--redis", REDIS_URL, "--stream", cfg.in_stream)
        assert pushed.returncode == 0, pushed.stderr
        n = int(pushed.stdout.split()[1])
        tailed = run_cli("tail", "--redis", REDIS_URL, "--stream", cfg.out_stream, "--from-start",
                         "--count", str(n), "--json", timeout=120)
    assert tailed.returncode == 0, tailed.stderr
    import json

    from pipeline.core.datasets import load_file

    rows = [json.loads(line) for line in tailed.stdout.splitlines()]
    expected = {(c.conversation_id, t.turn_id) for c in load_file("tests/data/conversations.jsonl") for t in c.turns}
    assert len(rows) == n == len(expected)
    assert {(x["conversation_id"], x["turn_id"]) for x in rows} == expected


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "batch_size: must be > 0"),
    (["--redis", "redis://127.0.0.1:1/0"], "redis: no server answers at redis://127.0.0.1:1/0"),
    (["--redis", "http://127.0.0.1"], "redis: 'http://127.0.0.1' is not a redis://"),
    (["--adapter", "x=/nonexistent"], "adapter"),
])
def test_serve_refuses_a_bad_configuration_at_start(run_cli, flags, message):
    result = run_cli("serve", *flags, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    return tmp_path_factory.mktemp("stream-videos")


@pytest.fixture(scope="module")
def silent_server():
    """A TCP listener on 127.0.0.1 that accepts and never answers; `/allowed/` under it is allowed."""
    from test_video_policy import Listener

    server = Listener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def video_pool(pool, video_root, silent_server):
    from pipeline.core.video_policy import VideoPolicy
    from workers.video.actors import VideoPool, VideoPoolConfig
    from workers.video.decoder import DecodeConfig

    policy = VideoPolicy(video_roots=(str(video_root),), video_allow=(f"{silent_server.url}/allowed/",),
                         video_timeout_s=3)
    videos = VideoPool(VideoPoolConfig("cpu", actors=1, decode=DecodeConfig(frames=4), cpus_per_actor=0.5,
                                       policy=policy))
    yield videos
    videos.shutdown()


def test_turns_with_video_are_described_and_a_broken_video_still_labelled(r, prefix, pool, video_pool, video_root):
    from skimage import data

    from pipeline.core.description_cache import cache_key
    from pipeline.stream.runner import BackgroundWorker
    from workers.video.synthetic import make_video

    tmp_path = video_root
    clip = make_video(tmp_path / "face.mp4", 2, 25, "libx264", size=(384, 384), image=data.astronaut())
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    cfg = config(prefix)
    good, bad = VideoSegment(str(clip), 0.0, 1.5), VideoSegment(str(broken), 0.0, 1.5)
    with BackgroundWorker(cfg, pool, videos=video_pool) as w:
        push_turn(r, "call-5", 0, "Ann", "Guess what happened!", stream=cfg.in_stream, video=good)
        push_turn(r, "call-5", 1, "Bob", "Tell me.", stream=cfg.in_stream, video=bad)
        push_turn(r, "call-5", 2, "Ann", "Again!", stream=cfg.in_stream, video=good)
        wait_for(r, cfg, 3, running=w)
    labels = {x.turn_id: x for x in outputs(r, cfg)[0]}
    assert labels[0].description.startswith("One person faces the camera, smiling") and labels[0].flags == []
    assert labels[2].description == labels[0].description
    assert labels[1].description is None and labels[1].flags == ["no_description"]
    assert w.metrics.registry.get_sample_value("dialoguellm_video_errors_total") == 1
    assert w.metrics.registry.get_sample_value("dialoguellm_videos_described_total") == 1
    # Described once, kept in Redis under its content, bounds and describer.
    key = f"dialoguellm:descriptions:{cache_key(good, video_pool.describer, video_pool.version)}"
    assert r.exists(key)
    r.delete(key)


def test_a_crashed_describer_leaves_the_turn_labelled_from_its_text(r, prefix, pool, tmp_path):
    """The video actor is really killed (ray.kill, no restart): describing fails for the batch."""
    import ray
    from skimage import data

    from pipeline.core.video_policy import VideoPolicy
    from pipeline.stream.runner import BackgroundWorker
    from workers.video.actors import VideoPool, VideoPoolConfig
    from workers.video.decoder import DecodeConfig
    from workers.video.synthetic import make_video

    clip = make_video(tmp_path / "face.mp4", 1, 25, "libx264", size=(256, 256), image=data.astronaut())
    videos = VideoPool(VideoPoolConfig("cpu", actors=1, decode=DecodeConfig(frames=2), cpus_per_actor=0.5,
                                       policy=VideoPolicy(video_roots=(str(tmp_path),))))
    try:
        ray.kill(videos.actors.actors[0], no_restart=True)
        cfg = config(prefix)
        with BackgroundWorker(cfg, pool, videos=videos) as w:
            ids = [push_turn(r, "call-9", 0, "Ann", "Look at this!", stream=cfg.in_stream,
                             video=VideoSegment(str(clip), 0.0, 0.8))]
            wait_for(r, cfg, 1, running=w, timeout=120)
    finally:
        videos.shutdown()
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert dead == [] and labels[0].flags == ["no_description"] and labels[0].description is None
    assert w.metrics.registry.get_sample_value("dialoguellm_video_errors_total") == 1


def _serve_default_video_pool():
    """The video pool `dialoguellm serve` starts with no video flag (half a CPU here, beside the engine)."""
    from dataclasses import replace

    from pipeline.cli import build_parser
    from pipeline.cli.configs import ServeConfig
    from pipeline.core.flags import config_from_args
    from workers.video.actors import VideoPool

    config = config_from_args(ServeConfig, build_parser().parse_args(["serve"])).video
    assert config.describer == "cpu" and config.policy.opens_nothing
    return VideoPool(replace(config, cpus_per_actor=0.5))


def test_the_seven_uris_of_the_issue_are_labelled_flagged_and_never_opened(r, prefix, pool, tmp_path):
    """http://, tcp://, rtsp://, concat: at a 127.0.0.1 listener, /etc/passwd, /dev/stdin, /proc/self/environ,
    with serve's default configuration: all labelled from their text, flagged, and no connection made."""
    from test_video_policy import Listener, seven

    from pipeline.stream.runner import BackgroundWorker

    listener = Listener()
    videos = _serve_default_video_pool()
    try:
        cfg = config(prefix)
        uris = seven(listener)
        with BackgroundWorker(cfg, pool, videos=videos) as w:
            start = time.monotonic()
            ids = [push_turn(r, "call-7", k, "Customer", f"Turn {k}: my order is late.", stream=cfg.in_stream,
                             video=VideoSegment(uri, 0.0, 2.0)) for k, uri in enumerate(uris)]
            wait_for(r, cfg, len(ids), timeout=60, running=w)
            took = time.monotonic() - start
        time.sleep(0.2)
    finally:
        videos.shutdown()
        listener.close()
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert dead == [] and all(x.flags == ["no_description"] and x.description is None for x in labels)
    assert listener.connections == []
    refused = {reason: w.metrics.registry.get_sample_value("dialoguellm_videos_refused_total", {"reason": reason})
               for reason in ("not_allowed", "scheme", "no_root", "pseudo_fs")}
    assert refused == {"not_allowed": 1, "scheme": 3, "no_root": 1, "pseudo_fs": 2}
    assert w.metrics.registry.get_sample_value("dialoguellm_video_errors_total") == 7
    print(f"seven URIs: all {len(labels)} labelled and flagged in {took:.2f} s, {len(listener.connections)} "
          "connections")


def test_serve_with_its_default_configuration_labels_the_seven_uris_within_60_s(r, prefix, pool, tiny_model):
    """The issue's case as an attacker tried it: `serve` with no video flag (cpu describer, one video
    actor), its stdin a pipe left open, seven turns waiting; counted from the worker's first read."""
    import json
    import threading

    from test_video_policy import Listener, seven

    listener = Listener()
    cfg = config(prefix)
    ids = [push_turn(r, "call-s", k, "Customer", f"Turn {k}: where is my parcel?", stream=cfg.in_stream,
                     video=VideoSegment(uri, 0.0, 2.0)) for k, uri in enumerate(seven(listener))]
    args = [sys.executable, "-m", "pipeline.cli", "serve", "--redis", cfg.redis_url, "--in-stream", cfg.in_stream,
            "--out-stream", cfg.out_stream, "--consumer", "s", "--model", str(tiny_model), "--max-model-len", "256",
            "--kv-cache-gib", "0.5"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    stdin_r, stdin_w = os.pipe()
    proc = subprocess.Popen(args, cwd=REPO, env=env, start_new_session=True, stdin=stdin_r,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started, lines = threading.Event(), []

    def read_logs() -> None:
        for line in proc.stderr:
            lines.append(line)
            if '"worker started"' in line:
                started.set()

    threading.Thread(target=read_logs, daemon=True).start()
    try:
        assert started.wait(300), "".join(lines)[-3000:]
        start = time.monotonic()
        wait_for(r, cfg, len(ids), timeout=60)
        took = time.monotonic() - start
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(stdin_r), os.close(stdin_w)
        listener.close()
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert dead == [] and all(x.flags == ["no_description"] for x in labels)
    assert listener.connections == []
    events = [json.loads(x) for x in lines if x.startswith("{")]
    assert any("no video is opened" in e.get("event", "") for e in events)
    refusals = [e for e in events if e.get("event") == "video not described"]
    assert len(refusals) == 7 and all("refused" in e["error"] for e in refusals)
    print(f"serve, default configuration: 7 turns labelled and flagged {took:.2f} s after the worker started, "
          f"{len(listener.connections)} connections")


def test_an_allowed_server_that_never_answers_holds_the_turn_only_to_the_deadline(r, prefix, pool, video_pool,
                                                                                   silent_server):
    from pipeline.stream.runner import BackgroundWorker

    cfg = config(prefix)
    before = len(silent_server.connections)
    with BackgroundWorker(cfg, pool, videos=video_pool) as w:
        start = time.monotonic()
        ids = [push_turn(r, "call-8", 0, "Ann", "Can you see me?", stream=cfg.in_stream,
                         video=VideoSegment(f"{silent_server.url}/allowed/v.mp4", 0.0, 1.0)),
               push_turn(r, "call-8", 1, "Bob", "No.", stream=cfg.in_stream,
                         video=VideoSegment(f"{silent_server.url}/other/v.mp4", 0.0, 1.0))]
        wait_for(r, cfg, 2, timeout=60, running=w)
        took = time.monotonic() - start
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert dead == [] and all(x.flags == ["no_description"] for x in labels)
    assert len(silent_server.connections) - before == 1  # the allowed one only
    assert took < video_pool.policy.video_timeout_s + 10, took
    assert w.metrics.registry.get_sample_value("dialoguellm_videos_refused_total", {"reason": "not_allowed"}) == 1
    assert w.metrics.registry.get_sample_value("dialoguellm_video_errors_total") == 2
    print(f"silent allowed server: labelled and flagged in {took:.2f} s (deadline "
          f"{video_pool.policy.video_timeout_s:g} s)")


def test_a_hung_video_actor_is_replaced_and_its_turn_labelled_without_description(r, prefix, pool, tmp_path):
    """The actor's process is really stopped (SIGSTOP): it answers nothing, as on a dead NFS mount."""
    import ray
    from skimage import data

    from pipeline.core.video_policy import VideoPolicy
    from pipeline.stream.runner import BackgroundWorker
    from workers.video.actors import VideoPool, VideoPoolConfig
    from workers.video.decoder import DecodeConfig
    from workers.video.synthetic import make_video

    clip = make_video(tmp_path / "face.mp4", 1, 25, "libx264", size=(256, 256), image=data.astronaut())
    videos = VideoPool(VideoPoolConfig("cpu", actors=1, decode=DecodeConfig(frames=2), cpus_per_actor=0.5,
                                       policy=VideoPolicy(video_roots=(str(tmp_path),), video_timeout_s=1),
                                       describe_grace_s=1))
    try:
        old_pid = ray.get(videos.actors.actors[0].info.remote())["pid"]
        os.kill(old_pid, signal.SIGSTOP)
        cfg = config(prefix)
        with BackgroundWorker(cfg, pool, videos=videos) as w:
            start = time.monotonic()
            ids = [push_turn(r, "call-h", 0, "Ann", "Look at this!", stream=cfg.in_stream,
                             video=VideoSegment(str(clip), 0.0, 0.8))]
            wait_for(r, cfg, 1, running=w, timeout=60)
            took = time.monotonic() - start
            deadline = time.monotonic() + 120
            while videos.actors.alive < 1:  # the replacement answers
                assert time.monotonic() < deadline, "no new video actor"
                time.sleep(0.2)
            ids.append(push_turn(r, "call-h", 1, "Ann", "And now?", stream=cfg.in_stream,
                                 video=VideoSegment(str(clip), 0.0, 0.8)))
            wait_for(r, cfg, 2, running=w, timeout=60)
        new_pid = ray.get(videos.actors.actors[0].info.remote())["pid"]
    finally:
        videos.shutdown()
    labels, dead = assert_exactly_once(r, cfg, ids)
    by_turn = {x.turn_id: x for x in labels}
    assert dead == [] and by_turn[0].flags == ["no_description"] and by_turn[0].description is None
    assert by_turn[1].flags == [] and by_turn[1].description.startswith("One person")
    assert new_pid != old_pid and took < 2 + 10, took
    print(f"hung video actor: turn labelled without description in {took:.2f} s (deadline 1 + 1 s); "
          f"actor {old_pid} replaced by {new_pid}")


def test_dead_letters_replayed_after_a_fix_are_labelled_once(r, prefix, pool, run_cli):
    strict = config(prefix, max_text_chars=10)
    texts = ["This sentence is too long for it.", "So is this one, clearly.", "ok"]
    ids = [push_turn(r, "call-6", k, "Ann", text, stream=strict.in_stream) for k, text in enumerate(texts)]
    with worker(strict, pool):
        wait_for(r, strict, 3)
    labels, dead = assert_exactly_once(r, strict, ids)
    assert len(dead) == 2 and all("more than the limit of 10" in d.error for d in dead)

    dry = run_cli("replay", "--redis", REDIS_URL, "--in-stream", strict.in_stream, "--dry-run")
    assert dry.returncode == 0 and "would replay 2 entries" in dry.stdout and r.xlen(strict.dead_letter_stream) == 2
    done = run_cli("replay", "--redis", REDIS_URL, "--in-stream", strict.in_stream, "--error-contains", "limit")
    assert done.returncode == 0 and "replayed 2 entries" in done.stdout, done.stderr
    assert r.xlen(strict.dead_letter_stream) == 0

    fixed = config(prefix, max_text_chars=2000)  # the fix: a worker that takes longer texts
    with worker(fixed, pool):
        wait_for(r, fixed, 3)
    labels, dead = outputs(r, fixed)
    assert dead == [] and sorted(x.turn_id for x in labels) == [0, 1, 2]  # each turn labelled once
    assert len({x.source_id for x in labels}) == 3
    again = run_cli("replay", "--redis", REDIS_URL, "--in-stream", strict.in_stream)
    assert "replayed 0 entries" in again.stdout


def test_replay_moves_every_dead_letter_across_pages(r, prefix):
    """Pages of 100: the entry that ends a page is replayed (deleted) before the next page is read."""
    from pipeline.stream.replay import replay_dead_letters

    dead, inbox = f"{prefix}:dead", f"{prefix}:turns"
    for i in range(250):
        r.xadd(dead, DeadLetter(TurnMessage("c", i, "A", f"turn {i}").encode()[PAYLOAD], f"0-{i + 1}",
                                "engine failed", 3).encode())
    dry = replay_dead_letters(r, dead, inbox, keep=lambda _: True, dry_run=True)
    assert len(dry) == 250 and r.xlen(dead) == 250 and not r.exists(inbox)
    done = replay_dead_letters(r, dead, inbox, keep=lambda _: True)
    assert len(done) == 250 and r.xlen(inbox) == 250 and r.xlen(dead) == 0
    replayed = [msgpack.unpackb(fields[PAYLOAD.encode()], raw=False)["turn_id"] for _, fields in r.xrange(inbox)]
    assert replayed == list(range(250))


def test_an_entry_deleted_while_pending_is_dead_lettered_without_payload(r, prefix, pool):
    """XAUTOCLAIM on Redis 7 lists such ids apart and drops them from the pending list."""
    from pipeline.stream.worker import DELETED_ENTRY

    cfg = config(prefix, claim_idle_ms=100, claim_interval_ms=200)
    r.xgroup_create(cfg.in_stream, cfg.group, id="0", mkstream=True)
    ids = push_many(r, cfg.in_stream, [TurnMessage("c", i, "A", f"turn {i}") for i in range(4)])
    r.xreadgroup(cfg.group, "crashed", {cfg.in_stream: ">"})  # a worker that read them, then died
    r.xdel(cfg.in_stream, ids[1])
    time.sleep(0.2)
    with worker(cfg, pool):
        wait_for(r, cfg, 4, timeout=120)
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert [(d.source_id, d.error, d.payload) for d in dead] == [(ids[1], DELETED_ENTRY, b"")]
    assert sorted(label.turn_id for label in labels) == [0, 2, 3]
    assert r.xpending(cfg.in_stream, cfg.group)["pending"] == 0


def test_a_deleted_group_is_recreated_and_nothing_is_labelled_twice(r, prefix, pool):
    cfg = config(prefix)
    with worker(cfg, pool) as w:
        first = [push_turn(r, "g", i, "A", f"turn {i}", stream=cfg.in_stream) for i in range(3)]
        wait_for(r, cfg, 3, running=w)
        r.xgroup_destroy(cfg.in_stream, cfg.group)  # an operator's mistake under a running worker
        later = [push_turn(r, "g", i, "A", f"turn {i}", stream=cfg.in_stream) for i in range(3, 6)]
        wait_for(r, cfg, 6, running=w, timeout=120)
        time.sleep(1.5)  # the recreated group redelivers the first three: their done markers hold
    labels, dead = assert_exactly_once(r, cfg, first + later)
    assert dead == [] and r.xlen(cfg.out_stream) == 6
    assert w.metrics.registry.get_sample_value("dialoguellm_redis_errors_total") >= 1


@pytest.fixture
def acl_user(r):
    """A real ACL user with a password on the test server, removed afterwards."""
    name = f"dllm-{uuid.uuid4().hex[:6]}"
    r.acl_setuser(name, enabled=True, passwords=["+S3cretPass"], keys=["*"], commands=["+@all"])
    yield name
    r.acl_deluser(name)


def test_redis_errors_are_one_line_and_never_show_a_password(r, prefix, run_cli, acl_user, tmp_path):
    host = REDIS_URL.split("//", 1)[1]
    wrong = f"redis://{acl_user}:WrongPass@{host}"
    right = f"redis://{acl_user}:S3cretPass@{host}"
    not_a_stream = f"{prefix}:plain"
    r.set(not_a_stream, "x")
    cases = [
        (("push", "tests/data/conversations.jsonl", "--redis", wrong), "authentication failed"),
        (("tail", "--redis", wrong, "--count", "1"), "authentication failed"),
        (("replay", "--redis", wrong), "authentication failed"),
        (("serve", "--redis", wrong), "authentication failed"),
        (("push", "tests/data/conversations.jsonl", "--redis", right, "--stream", not_a_stream),
         f"key '{not_a_stream}'"),
        (("tail", "--redis", right, "--stream", not_a_stream, "--count", "1"), "is a string, not a stream"),
        (("replay", "--redis", right, "--in-stream", not_a_stream), "is a string, not a stream"),
        (("serve", "--redis", right, "--in-stream", not_a_stream), "is a string, not a stream"),
    ]
    for args, message in cases:
        result = run_cli(*args, timeout=120)
        output = result.stdout + result.stderr
        assert result.returncode == 2, (args, output[-2000:])
        assert "Traceback" not in output, (args, output[-2000:])
        assert message in result.stderr.strip().splitlines()[-1], (args, result.stderr[-500:])
        assert "WrongPass" not in output and "S3cretPass" not in output
        assert f"{acl_user}:***@" in result.stderr


@pytest.fixture
def two_engines(pool, tiny_model, tiny_adapter):
    """Two more real engine actors (a quarter CPU each beside the session's pool and video actors)."""
    from workers.engine_config import EngineConfig
    from workers.engine_pool import EnginePool, PoolConfig

    engines = EnginePool(EngineConfig(model=str(tiny_model), adapters={"tiny": str(tiny_adapter)}, max_model_len=256,
                                      max_lora_rank=8, kv_cache_gib=1),
                         PoolConfig(engines=2, cpus_per_engine=0.25, max_restarts=3))
    yield engines
    engines.shutdown()


def _engine_pids(engines, timeout: float = 240) -> list[int]:
    """The engines' process ids, once every one answers (one Ray is restarting may not yet)."""
    import ray

    deadline = time.monotonic() + timeout
    while True:
        try:
            return [ray.get(a.info.remote(), timeout=30)["pid"] for a in engines.actors.actors]
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
            assert time.monotonic() < deadline, "the engines did not come back"
            time.sleep(1)


def test_engines_killed_mid_run_lose_and_dead_letter_nothing(r, prefix, two_engines, data_root):
    import signal

    cfg = config(prefix, batch_size=8, claim_idle_ms=60_000)
    messages = meld_messages(data_root, 120)
    with worker(cfg, two_engines) as w:
        ids = push_many(r, cfg.in_stream, messages)
        while r.xlen(cfg.out_stream) < 12:
            w.check()
            time.sleep(0.05)
        os.kill(_engine_pids(two_engines)[0], signal.SIGKILL)  # one engine dies mid-run
        wait_for(r, cfg, 120, running=w, timeout=300)
        labels, dead = assert_exactly_once(r, cfg, ids)
        assert dead == [], [d.error for d in dead][:3]

        # Every engine dies: turns wait, unacknowledged, until Ray has restarted one.
        for pid in _engine_pids(two_engines):
            os.kill(pid, signal.SIGKILL)
        later = push_many(r, cfg.in_stream, meld_messages(data_root, 10))
        time.sleep(3)
        assert r.xlen(cfg.out_stream) == 120 and r.xlen(cfg.dead_letter_stream) == 0
        assert r.xpending(cfg.in_stream, cfg.group)["pending"] == 10  # read, waiting, not acknowledged
        wait_for(r, cfg, 130, running=w, timeout=300)
    labels, dead = assert_exactly_once(r, cfg, ids + later)
    assert dead == [] and len(labels) == 130
    assert w.metrics.registry.get_sample_value("dialoguellm_engines_alive") >= 1


def test_a_broken_adapter_file_dead_letters_its_turns_readably_and_the_others_are_labelled(r, prefix, pool,
                                                                                           tiny_model, tiny_adapter,
                                                                                           tmp_path):
    """The issue's case, caused for real: two adapters served, the second's weights cut short on disk
    after the engine started (a half-copied roll-out). Its turns go to the dead-letter stream with a
    one-line reason; the first adapter's turns, pushed after, are all labelled; the engine is checked
    (and restarted if it stopped answering) before it takes more work."""
    import shutil

    from workers.engine_config import EngineConfig
    from workers.engine_pool import EnginePool, PoolConfig

    good, bad = tmp_path / "good", tmp_path / "bad"
    shutil.copytree(tiny_adapter, good)
    shutil.copytree(tiny_adapter, bad)
    engines = EnginePool(EngineConfig(model=str(tiny_model), adapters={"good": str(good), "bad": str(bad)},
                                      default_adapter="good", max_model_len=256, max_lora_rank=8, kv_cache_gib=1),
                         PoolConfig(engines=1, cpus_per_engine=0.25, engine_timeout_s=30, health_timeout_s=20))
    try:
        weights = bad / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])  # loaded lazily, at its first turn: now it is broken
        cfg = config(prefix, max_deliveries=2, claim_idle_ms=1000, claim_interval_ms=300, batch_size=4)
        bad_ids = push_many(r, cfg.in_stream, [TurnMessage("b", k, "A", f"bad turn {k}", adapter="bad")
                                               for k in range(4)])
        with worker(cfg, engines) as w:
            time.sleep(5)
            started = time.monotonic()
            good_ids = push_many(r, cfg.in_stream, [TurnMessage("g", k, "A", f"good turn {k}", adapter="good")
                                                    for k in range(4)])
            deadline = time.monotonic() + 300
            while {x.source_id for x in outputs(r, cfg)[0]} < set(good_ids):
                w.check()
                assert time.monotonic() < deadline, "the good adapter's turns were not labelled"
                time.sleep(0.2)
            good_after = time.monotonic() - started
            # Each of the bad turns' deliveries may cost an engine restart (a broken engine is replaced).
            wait_for(r, cfg, 8, timeout=900, running=w)
        labels, dead = assert_exactly_once(r, cfg, bad_ids + good_ids)
        assert {x.source_id for x in labels} == set(good_ids) and all(x.adapter == "good" for x in labels)
        assert {d.source_id for d in dead} == set(bad_ids)
        # Within the engine's deadline plus a restart (the tiny engine starts in well under 2 minutes).
        assert good_after < cfg.claim_idle_ms / 1000 + engines.config.deadline_s(4) + 180
        for letter in dead:
            assert "\n" not in letter.error and "\x1b" not in letter.error, letter.error
            for ray_detail in ("pid=", "ip=", "actor_id", "ray::"):
                assert ray_detail not in letter.error, letter.error
            assert letter.error.startswith("failed") or letter.error.startswith("delivered"), letter.error
    finally:
        engines.shutdown()


def test_a_conversations_turns_go_to_its_engine_while_it_lives_and_none_is_lost_when_it_dies(r, prefix, two_engines,
                                                                                              data_root):
    import ray

    def served_by() -> list[set[str]]:
        return [set(ray.get(a.conversations.remote(), timeout=120)) for a in two_engines.actors.actors]

    cfg = config(prefix, batch_size=16, claim_idle_ms=3000, claim_interval_ms=500)
    messages = meld_messages(data_root, 400, turns_per_conversation=10)  # 40 conversations
    first = [m for m in messages if m.turn_id < 5]
    second = [m for m in messages if m.turn_id >= 5]
    with worker(cfg, two_engines) as w:
        ids = push_many(r, cfg.in_stream, first)
        wait_for(r, cfg, len(ids), running=w)
        engines = served_by()
        conversations = {m.conversation_id for m in first}
        # Every conversation was labelled on one engine only: its home.
        assert engines[0] | engines[1] >= conversations and not engines[0] & engines[1] & conversations
        for c in conversations:
            assert c in engines[two_engines.home(c)]
        assert w.metrics.registry.get_sample_value("dialoguellm_prompt_tokens_total") > 0
        ratio = w.metrics.registry.get_sample_value("dialoguellm_prompt_tokens_cached_ratio")
        assert 0 < ratio < 1  # the shared instruction at least is served from the cache
        # One engine dies (Ray restarts it); its conversations go to the other meanwhile, none lost.
        ray.kill(two_engines.actors.actors[0], no_restart=False)
        ids += push_many(r, cfg.in_stream, second)
        wait_for(r, cfg, len(ids), running=w)
    labels, dead = assert_exactly_once(r, cfg, ids)
    assert dead == [] and len(labels) == len(messages)
