"""Redaction (`pipeline.core.redaction`), the prompts' option (`--redact-prompts`) and `dialoguellm forget`
against the real Redis at 127.0.0.1:6379. The page's redaction through Chromium is in test_watch.py."""

from __future__ import annotations

import dataclasses
import uuid

import msgpack
import pytest
from conftest import REDIS_URL
from stdnum import luhn

from pipeline.core.errors import ConfigError
from pipeline.core.predictions import LabelRequest
from pipeline.core.redaction import RedactionConfig, redact, redact_requests
from pipeline.core.turns import Turn

VISA, MASTERCARD, AMEX = "4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005"
ORDER = "4111 1111 1111 1112"  # 16 digits of a card issuer's range, failing the Luhn check
PLAIN_ORDER = "1234567812345678"


def test_card_numbers_that_pass_luhn_become_card_and_order_numbers_stay():
    assert luhn.is_valid(VISA.replace(" ", "")) and not luhn.is_valid(ORDER.replace(" ", ""))
    assert redact(f"my card is {VISA}, thanks") == "my card is <CARD>, thanks"
    assert redact(f"card {MASTERCARD} or {AMEX}") == "card <CARD> or <CARD>"
    assert redact(f"order {ORDER} arrived") == f"order {ORDER} arrived"
    assert redact(f"order number {PLAIN_ORDER}") == f"order number {PLAIN_ORDER}"
    # A card number beside other digits: the security code after it, a reference before it.
    assert redact(f"{VISA} 123, expires 12/27") == "<CARD> 123, expires 12/27"
    assert redact(f"ref 12 {VISA}") == "ref 12 <CARD>"


def test_email_addresses():
    assert redact("write to jo.doe+erc@mail.example.co.uk.") == "write to <EMAIL>."
    assert redact("Ann@Example.COM or bob_2@x.io") == "<EMAIL> or <EMAIL>"
    assert redact("meet me @ noon, 50% off @home") == "meet me @ noon, 50% off @home"


def test_international_and_national_phone_numbers():
    assert redact("call +44 20 7946 0958 now") == "call <PHONE> now"
    assert redact("or +49 30 901820") == "or <PHONE>"
    assert redact("my number is (415) 555-2671") == "my number is <PHONE>"  # US, national
    assert redact("ring 020 7946 0958") == "ring <PHONE>"  # GB, national
    german = "ruf 030 901820 an"
    assert redact(german) == german  # a national number of a region not asked for
    assert redact(german, RedactionConfig(phone_regions=("DE",))) == "ruf <PHONE> an"
    assert redact("ticket 1234-5678, born 1985, 3 kids, £1,250.00") == "ticket 1234-5678, born 1985, 3 kids, £1,250.00"


def test_ibans_with_a_valid_checksum_only():
    assert redact("IBAN GB82 WEST 1234 5698 7654 32 please") == "IBAN <IBAN> please"
    assert redact("to de89370400440532013000.") == "to <IBAN>."
    wrong = "IBAN GB82 WEST 1234 5698 7654 33 please"  # one digit off: the checksum fails
    assert redact(wrong) == wrong


def test_phone_regions_are_checked_naming_the_field():
    with pytest.raises(ConfigError, match="^phone_regions: XX"):
        RedactionConfig(phone_regions=("XX",))
    assert RedactionConfig(phone_regions=("de", "fr")).phone_regions == ("DE", "FR")


def test_requests_are_redacted_target_and_context(tiny_model):
    from pipeline.core.prompter import Prompter

    context = (Turn("c", 0, "Customer", f"it is {VISA}"), Turn("c", 1, "Agent", "And your e-mail?"))
    request = LabelRequest(Turn("c", 2, "Customer", "jo@example.com, call me on +44 20 7946 0958"), context)
    (redacted,) = redact_requests([request])
    prompt = Prompter.from_model(str(tiny_model), 2, 256).build(redacted)
    assert "Customer: it is <CARD>" in prompt and "Customer: <EMAIL>, call me on <PHONE>" in prompt
    assert "4111" not in prompt and "example.com" not in prompt and "7946" not in prompt
    assert redacted.turn.turn_id == 2 and redacted.context[1] == context[1]


@pytest.mark.engine
def test_redact_prompts_makes_texts_differing_only_in_card_numbers_one_prompt(engine):
    """Through the real engine: redacted, two texts that differ only in their card number get exactly
    the same probabilities (the model saw the same prompt); unredacted they do not."""
    requests = [LabelRequest(Turn("c", 0, "Customer", f"Charge it to {card} now!")) for card in (VISA, MASTERCARD)]
    plain = engine.predict(requests)
    config = engine.config
    engine.config = dataclasses.replace(config, redact_prompts=True)
    try:
        redacted = engine.predict(requests)
    finally:
        engine.config = config
    assert redacted[0].probs == redacted[1].probs
    assert plain[0].probs != plain[1].probs


# ---- dialoguellm forget, against the real Redis --------------------------------------------------

@pytest.fixture
def prefix(r):
    from pipeline.stream.client import delete_keys

    name = f"test:forget:{uuid.uuid4().hex[:10]}"
    yield name
    delete_keys(r, f"{name}*")


def test_forget_deletes_the_conversations_texts_and_nothing_else(r, prefix, run_cli):
    from pipeline.core.wire import LabelMessage, TurnMessage
    from pipeline.stream.client import push_turn

    turns, labels, dead = f"{prefix}:turns", f"{prefix}:labels", f"{prefix}:turns:dead"
    for cid in ("gone", "kept"):
        for t in range(3):
            push_turn(r, cid, t, "Customer", f"{cid} turn {t}: card {VISA}", stream=turns)
            r.hset(f"{turns}:ctx:{cid}", str(t), msgpack.packb({"speaker": "Customer", "text": f"{cid} {t}"}))
        probs = {"neutral": 1.0}
        r.xadd(labels, LabelMessage(cid, 0, "neutral", 1.0, probs, None, "m", "1-0", 1.0).encode())
    bad = TurnMessage("gone", 9, "Customer", "x").encode()
    r.xadd(dead, {"payload": bad["payload"], "source_id": "1-0", "error": "test", "deliveries": "1"})
    r.xadd(dead, {"payload": b"\xc1 not msgpack", "source_id": "2-0", "error": "test", "deliveries": "1"})

    dry = run_cli("forget", "--conversation", "gone", "--in-stream", turns, "--redis", REDIS_URL, "--dry-run",
                  timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 3 stored turns" in dry.stdout and r.xlen(turns) == 6 and r.exists(f"{turns}:ctx:gone")

    result = run_cli("forget", "--conversation", "gone", "--in-stream", turns, "--redis", REDIS_URL, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"gone: deleted 3 stored turns ({turns}:ctx:gone), entries: 3 in {turns}, 1 in {dead}" in result.stdout
    assert not r.exists(f"{turns}:ctx:gone") and r.hlen(f"{turns}:ctx:kept") == 3
    left = [msgpack.unpackb(f[b"payload"])["conversation_id"] for _, f in r.xrange(turns)]
    assert left == ["kept"] * 3
    assert [f[b"source_id"] for _, f in r.xrange(dead)] == [b"2-0"]  # a payload naming none stays
    assert r.xlen(labels) == 2  # labels only with --labels

    result = run_cli("forget", "--conversation", "gone", "--in-stream", turns, "--out-stream", labels, "--labels",
                     "--redis", REDIS_URL, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"1 in {labels}" in result.stdout
    assert [msgpack.unpackb(f[b"payload"])["conversation_id"] for _, f in r.xrange(labels)] == ["kept"]


def test_forget_needs_a_conversation_and_refuses_a_key_of_another_type(r, prefix, run_cli):
    result = run_cli("forget", "--redis", REDIS_URL, timeout=60)
    assert result.returncode == 2 and "--conversation" in result.stderr and len(result.stderr.splitlines()) == 1
    result = run_cli("forget", "--conversation", "", "--redis", REDIS_URL, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("dialoguellm: error: conversation: must not be empty")
    r.set(f"{prefix}:turns", "not a stream")
    result = run_cli("forget", "--conversation", "c", "--in-stream", f"{prefix}:turns", "--redis", REDIS_URL,
                     timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr and f"{prefix}:turns" in result.stderr
