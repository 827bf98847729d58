"""`dialoguellm alerts`: rules, episodes and the consumer, against the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import REDIS_URL  # noqa: E402

from pipeline.alerts.config import AlertsConfig
from pipeline.alerts.episodes import ConversationState, LabelView, apply
from pipeline.alerts.rules import parse_rules
from pipeline.core.errors import ConfigError
from pipeline.core.wire import AlertMessage, LabelMessage

REPO = Path(__file__).resolve().parents[1]
RULE = {"name": "customer-upset", "labels": ["anger", "disgust", "sadness"], "threshold": 0.6, "turns": 3,
        "speaker": "(?i)^customer$", "clear_after": 2}
RULES_YAML = """rules:
  - name: customer-upset
    labels: [anger, disgust, sadness]
    threshold: 0.6
    turns: 3
    speaker: "(?i)^customer$"
    clear_after: 2
"""
UPSET = {"neutral": 0.1, "anger": 0.5, "sadness": 0.3, "joy": 0.1}   # score 0.8
CALM = {"neutral": 0.8, "anger": 0.1, "joy": 0.1}                    # score 0.1


def view(turn_id: int, speaker: str, probs: dict, written_ms: int = 0) -> LabelView:
    return LabelView(turn_id, f"{1000 + turn_id}-0", speaker, written_ms, probs)


def alerts_of(speakers_and_probs, rule=RULE) -> list[AlertMessage]:
    state = ConversationState()
    rules = parse_rules({"rules": [rule]})
    return apply(state, "c1", [view(i, s, p) for i, (s, p) in enumerate(speakers_and_probs)], rules)


# -- rules -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field", [
    ({"threshold": 1.5}, "rules[0].threshold"),
    ({"threshold": "high"}, "rules[0].threshold"),
    ({"labels": ["anger", "rage"]}, "rules[0].labels"),
    ({"labels": []}, "rules[0].labels"),
    ({"turns": 0}, "rules[0].turns"),
    ({"clear_after": 1.5}, "rules[0].clear_after"),
    ({"speaker": "(unclosed"}, "rules[0].speaker"),
    ({"name": ""}, "rules[0].name"),
    ({"threshhold": 0.5}, "rules[0].threshhold"),
])
def test_a_bad_rule_names_its_field(change, field):
    with pytest.raises(ConfigError, match="^" + re.escape(field) + ":"):
        parse_rules({"rules": [{**RULE, **change}]})


def test_rules_need_a_list_and_unique_names():
    with pytest.raises(ConfigError, match="^rules: "):
        parse_rules({"rule": [RULE]})
    with pytest.raises(ConfigError, match=r"^rules\[1\]\.name: 'customer-upset' is used"):
        parse_rules({"rules": [RULE, RULE]})
    with pytest.raises(ConfigError, match=r"^rules\[0\]\.threshold: missing"):
        parse_rules({"rules": [{k: v for k, v in RULE.items() if k != "threshold"}]})


def test_a_rule_scores_the_sum_of_its_labels_and_matches_its_speaker():
    rule = parse_rules({"rules": [RULE]})[0]
    assert rule.score(UPSET) == pytest.approx(0.8)
    assert rule.matches("Customer") and not rule.matches("agent") and not rule.matches("customer 2")


# -- episodes (pure) -------------------------------------------------------------------------------

def test_three_upset_customer_turns_open_one_episode_and_two_calm_ones_close_it():
    turns = [("customer", CALM), ("customer", UPSET), ("customer", UPSET), ("customer", UPSET),
             ("customer", UPSET), ("customer", CALM), ("customer", CALM), ("customer", CALM)]
    opened, closed = alerts_of(turns)
    assert (opened.closed, opened.turn_ids, opened.source_ids) == (False, [1, 2, 3], ["1001-0", "1002-0", "1003-0"])
    assert opened.score == pytest.approx(0.8)
    assert (closed.closed, closed.turn_ids, closed.opened_at) == (True, [1, 2, 3, 4], opened.opened_at)


def test_agent_turns_neither_count_nor_break_a_run():
    agent_upset = [("agent", UPSET)] * 5
    assert alerts_of(agent_upset) == []
    interleaved = [("customer", UPSET), ("agent", CALM), ("customer", UPSET), ("agent", UPSET), ("customer", UPSET)]
    [opened] = alerts_of(interleaved)
    assert opened.turn_ids == [0, 2, 4]


def test_a_calm_turn_breaks_the_run_and_a_later_episode_alerts_again():
    assert alerts_of([("customer", UPSET)] * 2 + [("customer", CALM)] + [("customer", UPSET)] * 2) == []
    turns = [("customer", UPSET)] * 3 + [("customer", CALM)] * 2 + [("customer", UPSET)] * 3
    assert [(a.closed, a.turn_ids) for a in alerts_of(turns)] == [(False, [0, 1, 2]), (True, [0, 1, 2]),
                                                                  (False, [5, 6, 7])]


def test_one_calm_turn_inside_an_episode_does_not_close_it():
    turns = [("customer", UPSET)] * 3 + [("customer", CALM), ("customer", UPSET), ("customer", CALM)]
    assert [a.closed for a in alerts_of(turns)] == [False]


def test_labels_are_applied_in_turn_order_and_late_ones_are_not():
    state = ConversationState()
    for turn in (2, 1, 3):
        assert state.admit(view(turn, "customer", UPSET), now_ms=1000)
    assert state.release(now_ms=1000, reorder_wait_ms=3000) == []  # turn 0 may still come
    assert state.admit(view(0, "customer", UPSET), now_ms=1000)
    assert [v.turn_id for v in state.release(1000, 3000)] == [0, 1, 2, 3]
    assert not state.admit(view(2, "customer", CALM), now_ms=1000) and state.late == 1  # twice, or too late


def test_a_label_waits_at_most_reorder_wait_ms_for_the_turn_before_it():
    state = ConversationState(last_turn=4)
    state.admit(view(6, "customer", UPSET), now_ms=10_000)
    state.admit(view(7, "customer", UPSET), now_ms=10_500)
    assert state.release(12_999, 3000) == [] and state.earliest_release_ms(3000) == 13_000
    assert [v.turn_id for v in state.release(13_000, 3000)] == [6, 7]  # turn 5 never came
    assert state.earliest_release_ms(3000) is None


def test_state_survives_its_bytes():
    state = ConversationState()
    rules = parse_rules({"rules": [RULE]})
    apply(state, "c", [view(0, "customer", UPSET), view(1, "customer", UPSET)], rules)
    state.admit(view(5, "customer", CALM, written_ms=7), now_ms=9)
    again = ConversationState.from_bytes(state.to_bytes())
    assert again == state
    assert [a.turn_ids for a in apply(again, "c", [view(2, "customer", UPSET)], rules)] == [[0, 1, 2]]


# -- context-only turns (a speaker the worker does not label, `--label-speakers`) ---------------------

def context_view(turn_id: int, speaker: str = "agent") -> LabelView:
    return LabelView(turn_id, f"{1000 + turn_id}-0", speaker, 0, {}, context_only=True)


def context_label(conversation: str, turn_id: int, speaker: str = "agent") -> dict:
    """A context-only entry exactly as the worker writes it: nil label and confidence, empty probs."""
    from pipeline.core.wire import FLAG_CONTEXT_ONLY

    return LabelMessage(conversation, turn_id, None, None, {}, None, "test", f"{turn_id + 1}-0", 1.0, None,
                        [FLAG_CONTEXT_ONLY], speaker).encode()


def test_context_only_turns_neither_count_nor_break_a_run_whatever_the_rules_speaker():
    rules = parse_rules({"rules": [RULE, {**RULE, "name": "anyone-upset", "speaker": None}]})
    turns = [view(0, "customer", UPSET), context_view(1), view(2, "customer", UPSET), context_view(3, "customer"),
             view(4, "customer", UPSET), context_view(5), context_view(6), view(7, "customer", UPSET)]
    alerts = apply(ConversationState(), "c1", turns, rules)
    # The rule without a speaker sees the context-only turns no more than the customers' rule does;
    # two of them inside the open episode do not close it (they are not "below the threshold").
    assert [(a.rule, a.closed, a.turn_ids) for a in alerts] == [("customer-upset", False, [0, 2, 4]),
                                                               ("anyone-upset", False, [0, 2, 4])]


def test_a_context_only_label_takes_its_place_in_the_turn_order():
    from pipeline.alerts.episodes import label_view
    from pipeline.core.wire import FLAG_CONTEXT_ONLY

    message = LabelMessage("c", 1, None, None, {}, None, "m", "2-0", 1.0, None, [FLAG_CONTEXT_ONLY], "Agent")
    assert label_view(message, "5-0") == LabelView(1, "2-0", "Agent", 5, {}, context_only=True)
    state = ConversationState()
    for v in (view(2, "customer", UPSET), context_view(1), view(0, "customer", UPSET)):
        assert state.admit(v, now_ms=1000)
    # Turn 2 does not wait for a turn 1 that will never carry an emotion: all three apply at once.
    assert [v.turn_id for v in state.release(now_ms=1000, reorder_wait_ms=3000)] == [0, 1, 2]
    again = ConversationState.from_bytes(ConversationState(held={1: context_view(1)}).to_bytes())
    assert again.held[1].context_only


# -- the consumer, against the real Redis ----------------------------------------------------------

@pytest.fixture
def streams(r):
    prefix = f"test:alerts:{uuid.uuid4().hex[:10]}"
    yield f"{prefix}:labels", f"{prefix}:alerts"
    for key in r.scan_iter(f"{prefix}:*"):
        r.delete(key)


def label(conversation: str, turn_id: int, speaker: str, probs: dict) -> dict:
    top = max(probs, key=probs.get)
    return LabelMessage(conversation, turn_id, top, probs[top], probs, None, "test", f"{turn_id + 1}-0", 1.0,
                        speaker=speaker).encode()


def read_alerts(r, stream: str) -> list[AlertMessage]:
    return [AlertMessage.decode(fields) for _, fields in r.xrange(stream)]


def consume_until(config: AlertsConfig, done, timeout: float = 30) -> None:
    """Run one consumer in this process until `done()` holds (or fail after `timeout` s)."""
    from pipeline.alerts.consumer import run_alerts

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_alerts(config, parse_rules({"rules": [RULE]}), stop))
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(done):
            assert time.monotonic() < deadline, "the consumer did not get there in time"
            assert not task.done(), task.exception() if task.done() else ""
            await asyncio.sleep(0.1)
        stop.set()
        await task

    asyncio.run(main())


def test_an_episode_in_the_stream_gives_one_open_and_one_closed_alert(r, streams):
    labels_stream, alerts_stream = streams
    # Written before any consumer exists: a new group starts at the stream's first entry.
    script = [("customer", UPSET), ("agent", UPSET), ("customer", UPSET), ("agent", CALM), ("customer", UPSET),
              ("customer", UPSET), ("customer", CALM), ("agent", CALM), ("customer", CALM)]
    for i, (speaker, probs) in enumerate(script):
        r.xadd(labels_stream, label("call-1", i, speaker, probs))
    config = AlertsConfig(redis_url=REDIS_URL, labels_stream=labels_stream, alerts_stream=alerts_stream,
                          consumer="c1")
    consume_until(config, lambda: len(read_alerts(r, alerts_stream)) >= 2)
    opened, closed = read_alerts(r, alerts_stream)
    assert (opened.conversation_id, opened.rule, opened.closed) == ("call-1", "customer-upset", False)
    assert opened.turn_ids == [0, 2, 4] and opened.source_ids == ["1-0", "3-0", "5-0"]
    assert (closed.closed, closed.turn_ids) == (True, [0, 2, 4, 5])
    assert r.xpending(labels_stream, config.group)["pending"] == 0


def test_context_only_entries_are_acknowledged_and_never_alert(r, streams):
    """A two-speaker call as a worker with `--label-speakers '(?i)^customer$'` writes it: the agents'
    turns context only; every entry is acknowledged, the customers' alerts are as without the agents."""
    labels_stream, alerts_stream = streams
    script = ["customer", "agent", "customer", "agent", "customer", "agent", "customer", "customer"]
    probs = [UPSET, None, UPSET, None, UPSET, None, CALM, CALM]
    for i, (speaker, p) in enumerate(zip(script, probs)):
        r.xadd(labels_stream, label("call-c", i, speaker, p) if p else context_label("call-c", i, speaker))
    config = AlertsConfig(redis_url=REDIS_URL, labels_stream=labels_stream, alerts_stream=alerts_stream,
                          consumer="c1", reorder_wait_ms=60_000)  # nothing may wait for a context-only turn
    consume_until(config, lambda: len(read_alerts(r, alerts_stream)) >= 2)
    assert [(a.closed, a.turn_ids) for a in read_alerts(r, alerts_stream)] == [(False, [0, 2, 4]),
                                                                             (True, [0, 2, 4])]
    assert r.xpending(labels_stream, config.group)["pending"] == 0 and r.xlen(config.dead_letter_stream) == 0
    state = ConversationState.from_bytes(r.get(f"{config.key_prefix}:state:call-c"))
    assert state.last_turn == 7 and state.held == {} and state.late == 0


def test_out_of_order_labels_give_the_alerts_of_the_ordered_ones(r, streams):
    labels_stream, alerts_stream = streams
    for turn in (1, 0, 3, 2, 4):
        r.xadd(labels_stream, label("call-2", turn, "customer", UPSET if turn < 3 else CALM))
    config = AlertsConfig(redis_url=REDIS_URL, labels_stream=labels_stream, alerts_stream=alerts_stream,
                          consumer="c1", batch_size=1)  # one label a transaction: the order is the stream's
    consume_until(config, lambda: len(read_alerts(r, alerts_stream)) >= 2)
    assert [(a.closed, a.turn_ids) for a in read_alerts(r, alerts_stream)] == [(False, [0, 1, 2]), (True, [0, 1, 2])]


def test_a_label_that_is_not_one_goes_to_the_dead_letter_stream(r, streams):
    labels_stream, alerts_stream = streams
    r.xadd(labels_stream, {"payload": b"\xc1 not msgpack"})
    bad_id = r.xadd(labels_stream, {"other": "field"}).decode()
    config = AlertsConfig(redis_url=REDIS_URL, labels_stream=labels_stream, alerts_stream=alerts_stream,
                          consumer="c1")
    consume_until(config, lambda: r.xlen(config.dead_letter_stream) >= 2)
    letters = r.xrange(config.dead_letter_stream)
    assert letters[1][1][b"source_id"].decode() == bad_id and b"not a label" in letters[1][1][b"error"]
    assert r.xpending(labels_stream, config.group)["pending"] == 0


def expected_alerts(script: dict[str, list]) -> list[tuple]:
    """The alerts the pure episode logic gives for each conversation's labels in turn order."""
    rules = parse_rules({"rules": [RULE]})
    out = []
    for conversation, turns in script.items():
        views = [LabelView(i, f"{i + 1}-0", s, 0, p) for i, (s, p) in enumerate(turns)]
        out += [(a.conversation_id, a.closed, tuple(a.turn_ids)) for a in apply(ConversationState(), conversation,
                                                                               views, rules)]
    return sorted(out)


def random_script(seed: int, conversations: int, turns: int) -> dict[str, list]:
    rng = random.Random(seed)
    return {f"call-{c}": [(rng.choice(("customer", "customer", "agent")), UPSET if rng.random() < 0.6 else CALM)
                          for _ in range(turns)] for c in range(conversations)}


def push_script(r, stream: str, script: dict[str, list]) -> None:
    pipe = r.pipeline(transaction=False)
    for turn in range(max(len(t) for t in script.values())):  # interleaved, as live calls are
        for conversation, turns in script.items():
            if turn < len(turns):
                pipe.xadd(stream, label(conversation, turn, *turns[turn]))
    pipe.execute()


def alerts_process(labels_stream: str, alerts_stream: str, rules: Path, consumer: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "alerts", "--redis", REDIS_URL, "--rules", str(rules),
         "--labels-stream", labels_stream, "--alerts-stream", alerts_stream, "--consumer", consumer,
         "--batch-size", "8", "--claim-idle-ms", "1000", "--claim-interval-ms", "500"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_consumer_killed_mid_run_and_restarted_loses_and_doubles_no_alert(r, streams, tmp_path):
    labels_stream, alerts_stream = streams
    (tmp_path / "rules.yaml").write_text(RULES_YAML)
    script = random_script(seed=7, conversations=150, turns=12)
    want = expected_alerts(script)
    push_script(r, labels_stream, script)
    first = alerts_process(labels_stream, alerts_stream, tmp_path / "rules.yaml", "alerts-a")
    try:
        wait_for(lambda: r.xlen(alerts_stream) >= 10, 60, "the first alerts")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert r.xlen(alerts_stream) < len(want), "killed too late to test anything"
    finally:
        first.kill()
    # Restarted under another name: the dead consumer's pending labels are claimed, not lost.
    second = alerts_process(labels_stream, alerts_stream, tmp_path / "rules.yaml", "alerts-b")
    try:
        wait_for(lambda: r.xpending(labels_stream, "dialoguellm-alerts")["pending"] == 0
                 and r.xinfo_groups(labels_stream)[0]["lag"] == 0, 120, "every label to be evaluated")
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.stderr.read()
    finally:
        second.kill()
    got = sorted((a.conversation_id, a.closed, tuple(a.turn_ids)) for a in read_alerts(r, alerts_stream))
    assert got == want


def test_two_consumers_share_the_work_and_write_each_alert_once(r, streams, tmp_path):
    labels_stream, alerts_stream = streams
    (tmp_path / "rules.yaml").write_text(RULES_YAML)
    script = random_script(seed=11, conversations=60, turns=10)
    push_script(r, labels_stream, script)
    workers = [alerts_process(labels_stream, alerts_stream, tmp_path / "rules.yaml", name) for name in ("a", "b")]
    try:
        wait_for(lambda: r.xinfo_groups(labels_stream)[0]["lag"] == 0 if r.exists(labels_stream) and
                 r.xinfo_groups(labels_stream) else False, 120, "every label to be read")
        wait_for(lambda: r.xpending(labels_stream, "dialoguellm-alerts")["pending"] == 0, 60, "every label acked")
        for w in workers:
            w.send_signal(signal.SIGTERM)
        assert [w.wait(30) for w in workers] == [0, 0]
    finally:
        for w in workers:
            w.kill()
    got = sorted((a.conversation_id, a.closed, tuple(a.turn_ids)) for a in read_alerts(r, alerts_stream))
    assert got == expected_alerts(script)


def test_a_bad_rules_file_fails_at_start_naming_the_field(run_cli, tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES_YAML.replace("threshold: 0.6", "threshold: 6"))
    result = run_cli("alerts", "--redis", REDIS_URL, "--rules", str(tmp_path / "rules.yaml"), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dialoguellm: error: rules[0].threshold: must be in (0, 1], got 6"]


def test_the_shipped_example_rules_load():
    from pipeline.alerts.rules import load_rules

    rules = load_rules(REPO / "deploy" / "alerts" / "rules.yaml")
    # Customers only: the "frustrated agent" rule left the shipped rules (README: "Privacy and the law").
    assert [r.name for r in rules] == ["customer-upset", "customer-angry-now"]
    assert rules[0] == parse_rules({"rules": [RULE]})[0]
