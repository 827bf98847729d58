"""Rolling adapters out to a running worker: real Redis, real Ray, real vLLM engines over the tiny model.

A worker whose two engines serve their default adapter v1 merged into the model (a CPU engine with
one adapter) labels a flood of turns over 1,000 conversations while `dialoguellm adapters` loads v2
(the engines restart one at a time into LoRA serving), gives it a 30% canary, switches the default
fully and unloads v1 (the engines build the model merged with v2 and restart from it, one at a time).
The two adapters are random LoRAs with different weights: every label's probabilities are checked
against a separate engine serving the adapter the label names.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid

import msgpack
import pytest

from pipeline.core.predictions import LabelRequest
from pipeline.core.rollout import canary_bucket
from pipeline.core.wire import PAYLOAD, ControlMessage, TurnMessage
from pipeline.stream.config import StreamConfig, worker_report_key

redis = pytest.importorskip("redis")

from conftest import REDIS_URL, acl_denials  # noqa: E402

pytestmark = pytest.mark.engine
CONVERSATIONS = 1000
SHARE = 0.3


@pytest.fixture(scope="module")
def adapters_root(tmp_path_factory, tiny_model):
    from tiny_model import build_lora_adapter

    root = tmp_path_factory.mktemp("adapters")
    build_lora_adapter(tiny_model, root / "v1", rank=8, seed=11)
    build_lora_adapter(tiny_model, root / "v2", rank=8, seed=22)
    return root


@pytest.fixture(scope="module")
def merged_engines(tiny_model, adapters_root):
    """Two engine actors serving v1 merged into the model: loading another restarts them, one at a time."""
    import ray

    from workers.engine_config import EngineConfig
    from workers.engine_pool import EnginePool, PoolConfig

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    engines = EnginePool(EngineConfig(model=str(tiny_model), adapters={"v1": str(adapters_root / "v1")},
                                      default_adapter="v1", max_model_len=256, max_lora_rank=8, kv_cache_gib=0.25),
                         PoolConfig(engines=2, cpus_per_engine=0.25))
    yield engines
    engines.shutdown()


def _config(prefix: str, root, **changes) -> StreamConfig:
    fields = dict(redis_url=REDIS_URL, in_stream=f"{prefix}:turns", out_stream=f"{prefix}:labels", consumer="a",
                  batch_size=64, batch_wait_ms=20, claim_interval_ms=500, control_stream=f"{prefix}:control",
                  adapters_root=str(root), heartbeat_s=1)
    return StreamConfig(**{**fields, **changes})


def _texts(data_root):
    from pipeline.core.datasets import load_dataset

    return [t for c in load_dataset("meld", "test", data_root) for t in c.turns]


def _round(texts, k: int, n: int = CONVERSATIONS) -> list[TurnMessage]:
    """Turn k of every conversation."""
    return [TurnMessage(f"call-{i}", k, texts[(7 * i + k) % len(texts)].speaker, texts[(7 * i + k) % len(texts)].text)
            for i in range(n)]


def _push(r, stream: str, messages: list) -> list[str]:
    ids = []
    for start in range(0, len(messages), 500):
        pipe = r.pipeline(transaction=False)
        for m in messages[start:start + 500]:
            pipe.xadd(stream, m.encode() if isinstance(m, TurnMessage) else m)
        ids += [i.decode() for i in pipe.execute()]
    return ids


def _written(r, cfg: StreamConfig) -> int:
    return r.xlen(cfg.out_stream) + r.xlen(cfg.dead_letter_stream)


def _wait_written(r, cfg: StreamConfig, n: int, w, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while _written(r, cfg) < n:
        w.check()
        assert time.monotonic() < deadline, f"{_written(r, cfg)} of {n} written in {timeout} s"
        time.sleep(0.1)


def _report(r, cfg: StreamConfig, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (value := r.get(worker_report_key(cfg.control_stream, cfg.consumer))) is None:
        assert time.monotonic() < deadline, "the worker never reported"
        time.sleep(0.2)
    return json.loads(value)


def _labels(r, cfg: StreamConfig):
    from pipeline.core.wire import DeadLetter, LabelMessage

    return ([LabelMessage.decode(f) for _, f in r.xrange(cfg.out_stream)],
            [DeadLetter.decode(f) for _, f in r.xrange(cfg.dead_letter_stream)])


def test_load_canary_switch_and_unload_in_a_running_worker(r, prefix, adapters_root, merged_engines, engine, run_cli,
                                                           data_root, tiny_model, tmp_path):
    from pipeline.stream.runner import BackgroundWorker

    cfg = _config(prefix, adapters_root)
    texts = _texts(data_root)
    v1, v2 = adapters_root / "v1", adapters_root / "v2"

    def adapters(*args: str, wait: float | None = None):
        extra = ["--wait-s", str(wait)] if wait else []
        return run_cli("adapters", *args, "--redis", REDIS_URL, "--control-stream", cfg.control_stream, *extra,
                       timeout=(wait or 0) + 120)

    phase: dict[str, list[str]] = {}
    assert merged_engines.merged
    with BackgroundWorker(cfg, merged_engines) as w:
        report = _report(r, cfg)
        assert report["adapters"].keys() == {"v1"} and report["default"] == "v1" and report["merged"]
        # A flood of three rounds (3,000 turns) while v2 is loaded: the engines restart one at a time.
        phase["v1"] = _push(r, cfg.in_stream, _round(texts, 0) + _round(texts, 1) + _round(texts, 2))
        started = time.monotonic()
        loaded = adapters("load", "v2", str(v2), wait=900)
        took = {"load v2 (merged -> LoRA restarts)": time.monotonic() - started}
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        assert "a: applied" in loaded.stdout and not _report(r, cfg)["merged"]
        _wait_written(r, cfg, sum(map(len, phase.values())), w)

        # Refused in one line at once, exit 2: a path outside --adapters-root, a reused name.
        outside = tmp_path / "outside"
        shutil.copytree(v2, outside)
        sneaky = adapters_root / f"sneaky-{prefix[-6:]}"
        sneaky.symlink_to(outside, target_is_directory=True)
        for args, reason in ((("load", "v3", str(outside)), "is outside --adapters-root"),
                             (("load", "v3", str(sneaky)), "is outside --adapters-root"),
                             (("load", "v2", str(v1)), "already loaded with other files"),
                             (("unload", "v1"), "is the default")):
            result = adapters(*args)
            assert result.returncode == 2, (args, result.stdout, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and reason in lines[0] and "Traceback" not in result.stderr, (args, result.stderr)
        # The worker refuses them too when they come round the command (the trust boundary), and
        # skips a malformed message; none stops it.
        sent = len(r.xrange(cfg.control_stream))
        r.xadd(cfg.control_stream, ControlMessage("load", "v3", str(outside)).encode())
        r.xadd(cfg.control_stream, ControlMessage("load", "v2", str(v1)).encode())
        r.xadd(cfg.control_stream, {PAYLOAD: b"\xc1 not msgpack"})
        r.xadd(cfg.control_stream, {PAYLOAD: msgpack.packb({"op": "load", "name": "v4", "path": "/etc"})})

        # A canary: 30% of conversations, by conversation, on v2; one round pushed once it applies.
        assert adapters("default", "v2", "--share", str(SHARE), wait=120).returncode == 0
        report = _report(r, cfg)
        assert report["canary"] == "v2" and report["share"] == SHARE and report["default"] == "v1"
        assert w.metrics.registry.get_sample_value("dialoguellm_control_refused_total") == 4
        assert len(r.xrange(cfg.control_stream)) == sent + 5
        phase["canary"] = _push(r, cfg.in_stream, _round(texts, 3))
        _wait_written(r, cfg, sum(map(len, phase.values())), w)

        # The default switched fully, then v1 unloaded, while two more rounds flow.
        phase["switching"] = _push(r, cfg.in_stream, _round(texts, 4) + _round(texts, 5))
        assert adapters("default", "v2", wait=120).returncode == 0
        started = time.monotonic()
        unloaded = adapters("unload", "v1", wait=900)  # v2 alone: merged again, one engine at a time
        took["unload v1 (LoRA -> merged v2 restarts)"] = time.monotonic() - started
        assert unloaded.returncode == 0, unloaded.stdout + unloaded.stderr
        phase["v2"] = _push(r, cfg.in_stream, _round(texts, 6))
        phase["asks v1"] = _push(r, cfg.in_stream, [TurnMessage("asks-v1", 0, "A", "Hello there.", adapter="v1")])
        _wait_written(r, cfg, sum(map(len, phase.values())), w)
        listed = adapters("list")
        counted = {a: w.metrics.registry.get_sample_value("dialoguellm_turns_by_adapter_total", {"adapter": a})
                   for a in ("v1", "v2")}
        report = _report(r, cfg)
    assert listed.returncode == 0 and "default=v2" in listed.stdout and "adapters=v2 (merged)" in listed.stdout
    assert report["adapters"].keys() == {"v2"} and report["canary"] is None and report["default"] == "v2"
    assert report["merged"] and merged_engines.merged

    # Every turn labelled once (the one naming the unloaded v1 dead-lettered), none lost or doubled.
    labels, dead = _labels(r, cfg)
    ids = [i for ids in phase.values() for i in ids]
    assert sorted([x.source_id for x in labels] + [d.source_id for d in dead]) == sorted(ids)
    assert [d.source_id for d in dead] == phase["asks v1"] and "unknown adapter 'v1'" in dead[0].error
    by_source = {x.source_id: x for x in labels}
    assert counted == {a: sum(x.adapter == a for x in labels) for a in counted}

    # The adapter of each phase's turns, and the canary's share of conversations.
    def adapters_of(name: str) -> list:
        return [by_source[i].adapter for i in phase[name]]

    assert set(adapters_of("v1")) == {"v1"}
    canary = {x.conversation_id: x.adapter for x in (by_source[i] for i in phase["canary"])}
    for conversation, adapter in canary.items():
        assert adapter == ("v2" if canary_bucket(conversation) < SHARE else "v1"), conversation
    share = sum(a == "v2" for a in canary.values()) / len(canary)
    assert abs(share - SHARE) <= 0.05, share
    print(f"\ncanary share {share:.3f} of {len(canary)} conversations; {len(labels)} labels, {len(dead)} dead letters; "
          + "; ".join(f"{k}: {v:.0f} s" for k, v in took.items()))
    for i in phase["switching"]:
        label = by_source[i]
        assert label.adapter in {canary[label.conversation_id], "v2"}
    assert set(adapters_of("v2")) == {"v2"}
    # Each label's probabilities are those of the adapter it names, merged or as a LoRA (and not of the other).
    engine.add_adapter(f"check-v1-{prefix[-4:]}", str(v1))
    engine.add_adapter(f"check-v2-{prefix[-4:]}", str(v2))
    names = {"v1": f"check-v1-{prefix[-4:]}", "v2": f"check-v2-{prefix[-4:]}"}
    sample = [x for x in labels if not x.flags][::23]
    assert {x.adapter for x in sample} == {"v1", "v2"}
    messages = {(m.conversation_id, m.turn_id): m for k in range(7) for m in _round(texts, k)}
    requests = []
    for x in sample:
        context = tuple(messages[(x.conversation_id, k)].to_turn() for k in range(max(0, x.turn_id - 2), x.turn_id))
        requests.append(LabelRequest(messages[(x.conversation_id, x.turn_id)].to_turn(), context, "meld"))
    expected = {a: engine.predict([LabelRequest(q.turn, q.context, q.label_set, names[a]) for q in requests])
                for a in names}
    distinct = 0
    for k, x in enumerate(sample):
        def distance(a) -> float:
            return max(abs(expected[a][k].probs[c] - x.probs[c]) for c in x.probs)

        assert distance(x.adapter) < 2e-3, (x.adapter, expected[x.adapter][k].probs, x.probs)
        distinct += all(distance(a) > 1e-2 for a in names if a != x.adapter)
    assert distinct >= 0.8 * len(sample), (distinct, len(sample))  # the check tells the adapters apart

    # A worker started after all this applies the stream's current state before its first turn.
    _a_later_worker_serves_the_current_state(r, prefix, cfg, tiny_model, texts)


def _a_later_worker_serves_the_current_state(r, prefix, cfg, tiny_model, texts):
    from dataclasses import replace

    from pipeline.stream.runner import BackgroundWorker
    from workers.engine_config import EngineConfig
    from workers.engine_pool import EnginePool, PoolConfig

    late = replace(cfg, in_stream=f"{prefix}:late:turns", out_stream=f"{prefix}:late:labels", consumer="late")
    engines = EnginePool(EngineConfig(model=str(tiny_model), max_model_len=256, max_lora_rank=8, kv_cache_gib=0.25,
                                      enable_lora=True), PoolConfig(engines=1, cpus_per_engine=0.25))
    try:
        with BackgroundWorker(late, engines) as w:
            report = _report(r, late)
            assert report["adapters"].keys() == {"v2"} and report["default"] == "v2", report
            # The stream's four refused messages are refused again, and so is the unload of v1, which this
            # worker never served (v1 was the first worker's own --adapter); it labels all the same.
            assert w.metrics.registry.get_sample_value("dialoguellm_control_refused_total") == 5
            assert "adapter 'v1' is not loaded" in report["refused"]
            ids = _push(r, late.in_stream, _round(texts, 0, n=40))
            _wait_written(r, late, len(ids), w)
        labels, dead = _labels(r, late)
        assert dead == [] and sorted(x.source_id for x in labels) == sorted(ids)
        assert {x.adapter for x in labels} == {"v2"}
    finally:
        engines.shutdown()


def test_the_readmes_rollout_user_may_send_control_messages_and_list_workers_and_nothing_else(
        r, prefix, adapters_root, run_cli):
    """The control stream's ACL user exactly as the README gives it (read from the README)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    line = re.search(r"^ACL SETUSER rollout (.+?)\n\s+(.+?)$", readme, re.M)
    assert line, "the README's rollout ACL line"
    control = f"{prefix}:control"
    user, password = f"rollout-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    rules = (line.group(1).rstrip(" \\") + " " + line.group(2)).replace("dialoguellm:control", control)
    r.execute_command("ACL", "SETUSER", user, *rules.replace(">PASSWORD", f">{password}").split())
    as_user = REDIS_URL.replace("redis://", f"redis://{user}:{password}@")
    common = ("--redis", as_user, "--control-stream", control)
    try:
        loaded = run_cli("adapters", "load", "v2", str(adapters_root / "v2"), "--adapters-root", str(adapters_root),
                         *common, timeout=120)
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        listed = run_cli("adapters", "list", *common, timeout=120)
        assert listed.returncode == 0, listed.stderr[-2000:]
        sent = [ControlMessage.parse(fields) for _, fields in r.xrange(control)]
        assert [(m.op, m.name) for m in sent] == [("load", "v2")]
        assert acl_denials(r, user) == []
        with redis.Redis.from_url(as_user) as limited:  # and that is all it may write
            with pytest.raises(redis.exceptions.NoPermissionError):
                limited.xadd(f"{prefix}:turns", {"payload": b"x"})
    finally:
        r.execute_command("ACL", "DELUSER", user)
