"""The wire format and the acknowledgement policy: pure, no Redis."""

import msgpack
import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.turns import VideoSegment
from pipeline.core.wire import (
    PAYLOAD,
    DeadLetter,
    LabelMessage,
    MalformedMessage,
    TurnMessage,
    TurnSchema,
    original_payload,
)
from pipeline.stream.ack_policy import AckPolicy, Action
from pipeline.stream.config import StreamConfig

SCHEMA = TurnSchema(max_text_chars=20, adapters=["tiny", "base"])
GOOD = {"conversation_id": "c1", "turn_id": 3, "speaker": "Ann", "text": "Hello there"}


def fields(body) -> dict:
    return {b"payload": msgpack.packb(body)}


def test_a_turn_round_trips_through_the_wire():
    message = TurnMessage("c1", 3, "Ann", "Hi", VideoSegment("clip.mp4", 1.5, 2.0), None, "tiny", "emorynlp")
    parsed = TurnSchema().parse({k.encode(): v for k, v in message.encode().items()})
    assert parsed == message
    assert parsed.to_turn().video == VideoSegment("clip.mp4", 1.5, 2.0)


@pytest.mark.parametrize("entry, reason", [
    ({b"other": b"x"}, "no 'payload' field"),
    ({b"payload": b"\xc1\xff not msgpack"}, "payload is not msgpack"),
    (fields([1, 2]), "payload is a msgpack list, expected a map"),
    (fields({**GOOD, "turn_id": None} | {}), "field 'turn_id' must be an integer, got NoneType"),
    (fields({k: v for k, v in GOOD.items() if k != "speaker"}), "missing field 'speaker'"),
    (fields({**GOOD, "turn_id": "3"}), "field 'turn_id' must be an integer, got str"),
    (fields({**GOOD, "turn_id": True}), "field 'turn_id' must be an integer, got bool"),
    (fields({**GOOD, "turn_id": -1}), "turn_id must be ≥ 0, got -1"),
    (fields({**GOOD, "text": "   "}), "text is empty"),
    (fields({**GOOD, "text": "x" * 21}), "text has 21 characters, more than the limit of 20"),
    (fields({**GOOD, "conversation_id": ""}), "conversation_id is empty"),
    (fields({**GOOD, "adapter": "/etc/passwd"}), "unknown adapter '/etc/passwd' (served: base, tiny)"),
    (fields({**GOOD, "label_set": "nope"}), "unknown label_set 'nope'"),
    (fields({**GOOD, "video": "clip.mp4"}), "field 'video' must be a map, got str"),
    (fields({**GOOD, "video": {"uri": "a.mp4", "start": 2, "end": 1}}), "video ends (1.0) before it starts (2.0)"),
    (fields({**GOOD, "video": {"uri": "a.mp4", "start": float("nan"), "end": 1}}), "video 'start' must be"),
])
def test_malformed_entries_are_rejected_with_a_reason(entry, reason):
    with pytest.raises(MalformedMessage) as e:
        SCHEMA.parse(entry)
    assert str(e.value).startswith(reason)


def test_a_message_never_names_a_path_that_gets_loaded():
    # Any adapter name outside the served set is refused before it reaches the engine.
    for name in ("../../secret", "s3://bucket/adapter", "tiny/../x"):
        with pytest.raises(MalformedMessage, match="unknown adapter"):
            SCHEMA.parse(fields({**GOOD, "adapter": name}))


def test_labels_and_dead_letters_round_trip():
    label = LabelMessage("c1", 3, "joy", 0.5, {"joy": 0.5, "neutral": 0.5}, None, "m", "1-0", 12.5, None,
                         ["no_description"])
    assert LabelMessage.decode(label.encode()) == label
    letter = DeadLetter(b"\x00raw", "5-1", "payload is not msgpack", 1)
    encoded = {k.encode(): (v if isinstance(v, bytes) else str(v).encode()) for k, v in letter.encode().items()}
    assert DeadLetter.decode(encoded) == letter
    # An entry without a payload field keeps all its fields in the dead letter.
    assert msgpack.unpackb(original_payload({b"other": b"x"})) == {"other": b"x"}


def test_readers_ignore_fields_added_later():
    label = LabelMessage("c1", 3, "joy", 0.5, {"joy": 0.5}, None, "m", "1-0", 12.5, speaker="Customer")
    body = msgpack.unpackb(label.encode()[PAYLOAD], raw=False)
    newer = {PAYLOAD: msgpack.packb({**body, "sentiment": "positive", "v": 2})}
    assert LabelMessage.decode(newer) == label
    older = {PAYLOAD: msgpack.packb({k: v for k, v in body.items() if k != "speaker"})}
    assert LabelMessage.decode(older).speaker == ""  # written before labels carried the speaker
    turn = SCHEMA.parse(fields({**GOOD, "priority": "high", "channel": {"kind": "voice"}}))
    assert turn == SCHEMA.parse(fields(GOOD))


def test_ack_policy_retries_failures_then_gives_up():
    policy = AckPolicy(max_deliveries=3)
    assert policy.failed("boom", 1).action is Action.RETRY
    assert policy.failed("boom", 3).action is Action.DEAD_LETTER
    assert "last error: boom" in policy.failed("boom", 3).reason
    assert policy.rejected("bad").action is Action.DEAD_LETTER
    assert policy.claimed(3, None) is None
    gave_up = policy.claimed(4, "engine failed: X")
    assert gave_up.action is Action.DEAD_LETTER and "delivered 4 times" in gave_up.reason
    assert "engine failed: X" in gave_up.reason


@pytest.mark.parametrize("change, field", [
    ({"batch_size": 0}, "batch_size"), ({"redis_url": "http://x"}, "redis"),
    ({"out_stream": "dialoguellm:turns"}, "out_stream"), ({"context_keep": 0}, "context_keep"),
    ({"batch_wait_ms": -1}, "batch_wait_ms"), ({"metrics_port": 70000}, "metrics_port"),
])
def test_a_bad_stream_config_names_its_field(change, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        StreamConfig(**change)


def test_structured_logs_carry_the_event_fields_only():
    import json
    import logging

    from pipeline.core.logs import JsonFormatter

    record = logging.LogRecord("dialoguellm.stream", logging.WARNING, __file__, 1, "dead-lettered", None, None)
    record.source_id, record.error, record._ray_timestamp_ns = "1-0", "text is empty", 123
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "dead-lettered" and line["level"] == "warning"
    assert line["source_id"] == "1-0" and line["error"] == "text is empty"
    assert "_ray_timestamp_ns" not in line and "lineno" not in line


def test_an_error_from_an_actor_becomes_one_readable_line():
    from pipeline.core.errors import one_line

    class RayTaskError(Exception):  # the shape of ray.exceptions.RayTaskError: the actor's exception in .cause
        def __init__(self, message, cause):
            super().__init__(message)
            self.cause = cause

    wrapped = RayTaskError(
        "\x1b[36mray::EngineActor.label()\x1b[39m (pid=4242, ip=10.1.2.3, actor_id=9f8e7d6c5b4a39281706f5e4d3c2b1a0, "
        "repr=<EngineActor object>)\n  File \"engine.py\", line 1\nValueError: x",
        ValueError("\x1b[31mcannot load LoRA\x1b[0m: header too small"))
    assert one_line(wrapped) == "ValueError: cannot load LoRA: header too small"
    plain = RuntimeError("ray::EngineActor.label() (pid=1, ip=127.0.0.1)\nTraceback (most recent call last):\n"
                         "  File \"x\", line 2\nRuntimeError: the engine stopped")
    assert one_line(plain) == "RuntimeError: the engine stopped"
    assert one_line(TimeoutError()) == "TimeoutError"
    assert len(one_line(RuntimeError("x" * 5000))) <= 300
