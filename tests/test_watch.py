"""`dialoguellm watch`: the pure board, the server against the real Redis at 127.0.0.1:6379 (uvicorn in
a thread), and the page in a headless Chromium (skipped, naming the packages, where it is missing).

Every test uses streams of its own (`test:watch:<random>:*`) and deletes its keys afterwards.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from pathlib import Path

import msgpack
import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.labels import LABEL_SETS
from pipeline.core.wire import FLAG_CONTEXT_ONLY, AlertMessage, LabelMessage
from pipeline.watch.board import Board, parse_entry_id, summary
from pipeline.watch.config import WatchConfig
from pipeline.watch.negative import NEGATIVE_LABELS, negative_score
from pipeline.watch.server import WatchServer

redis = pytest.importorskip("redis")
httpx = pytest.importorskip("httpx")

from conftest import REDIS_URL, acl_denials  # noqa: E402

MELD = LABEL_SETS["meld"].labels
TOKEN = "test-token-0123456789abcdef"
XSS = "<img src=x onerror=alert(1)>"


def label(cid: str, turn: int, name: str = "neutral", peak: float = 0.7, speaker: str = "Customer") -> LabelMessage:
    """A MELD label message whose probabilities peak at `name`."""
    rest = (1 - peak) / (len(MELD) - 1)
    probs = {x: round(peak if x == name else rest, 4) for x in MELD}
    return LabelMessage(cid, turn, name, probs[name], probs, None, "test-model", f"{turn + 1}-0", 12.0,
                        speaker=speaker)


def context(cid: str, turn: int, speaker: str = "Agent") -> LabelMessage:
    """A context-only entry as a worker with `--label-speakers` writes it: nil label and confidence, no probs."""
    return LabelMessage(cid, turn, None, None, {}, None, "test-model", f"{turn + 1}-0", 12.0, None,
                        [FLAG_CONTEXT_ONLY], speaker)


def alert(cid: str, turn_ids: list[int], closed: bool = False, rule: str = "negative_run") -> AlertMessage:
    return AlertMessage(cid, rule, turn_ids, [f"{t + 1}-0" for t in turn_ids], 0.91, time.time(), closed)


def wait_for(predicate, timeout: float = 5.0):
    """The predicate's first truthy value, polled until `timeout` (a functional wait, not a timing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


# ---- the pure core ------------------------------------------------------------------------------

def test_negative_labels_are_those_of_each_label_set():
    assert NEGATIVE_LABELS["meld"] == ("anger", "sadness", "disgust", "fear")
    assert NEGATIVE_LABELS["emorynlp"] == ("scared", "mad", "sad")
    assert all(NEGATIVE_LABELS[name] for name in ("meld", "emorynlp", "dailydialog", "iemocap"))
    assert negative_score({"anger": 0.5, "fear": 0.2, "joy": 0.3}) == pytest.approx(0.7)
    assert negative_score({"mad": 0.25, "sad": 0.25, "peaceful": 0.5}) == pytest.approx(0.5)


def test_turns_are_ordered_by_turn_id_whatever_order_labels_arrive_in():
    board = Board(window_ms=60_000, keep_turns=100)
    for n, turn in enumerate((2, 0, 1)):
        board.add_label((1000 + n, 0), label("c", turn, speaker=f"speaker-{turn}"))
    row = summary(board.conversations["c"])
    assert [t[0] for t in row["turns"]] == [0, 1, 2]
    assert row["speaker"] == "speaker-2"


def test_open_alerts_rank_first_then_the_latest_negative_score():
    board = Board(window_ms=60_000, keep_turns=100)
    board.add_label((1, 0), label("calm", 0, "joy", 0.9))
    board.add_label((2, 0), label("angry", 0, "anger", 0.9))
    board.add_label((3, 0), label("alerted", 0, "neutral", 0.9))
    board.add_label((4, 0), label("sad-then-fine", 0, "sadness", 0.9))
    board.add_label((5, 0), label("sad-then-fine", 1, "joy", 0.9))  # its latest turn counts, not its worst
    board.add_alert((6, 0), alert("alerted", [0]))
    assert [c.conversation_id for c in board.shown()] == ["alerted", "angry", "sad-then-fine", "calm"]
    board.add_alert((7, 0), alert("alerted", [0], closed=True))
    # Closed: ranked by its latest negative score like the others (ties: the most recent first).
    assert [c.conversation_id for c in board.shown()] == ["angry", "sad-then-fine", "alerted", "calm"]


def test_the_latest_entry_of_each_rule_says_whether_it_is_open():
    board = Board(window_ms=60_000, keep_turns=100)
    board.add_label((1, 0), label("c", 0))
    board.add_alert((2, 0), alert("c", [0], rule="a"))
    board.add_alert((3, 0), alert("c", [0], rule="b"))
    board.add_alert((4, 0), alert("c", [0], closed=True, rule="a"))
    assert board.conversations["c"].has_open_alert()
    board.add_alert((5, 0), alert("c", [0], closed=True, rule="b"))
    assert not board.conversations["c"].has_open_alert()
    assert [(a["rule"], a["closed"]) for a in summary(board.conversations["c"])["alerts"]] == [("a", True), ("b", True)]


def test_conversations_older_than_the_window_are_dropped_and_turns_capped():
    board = Board(window_ms=60_000, keep_turns=3)
    board.add_label((1_000, 0), label("old", 0))
    for turn in range(5):
        board.add_label((50_000 + turn, 0), label("recent", turn))
    assert board.expire(now_ms=70_000) == ["old"]
    assert list(board.conversations) == ["recent"]
    assert sorted(board.conversations["recent"].turns) == [2, 3, 4]


def test_changes_in_the_same_millisecond_of_the_other_stream_are_not_missed():
    board = Board(window_ms=60_000, keep_turns=100)
    board.add_label((1000, 5), label("a", 0))
    board.add_label((1000, 6), label("b", 0))
    seen = board.cursor
    # The alerts stream numbers its own entries: 1000-0 comes after labels' 1000-6 was seen.
    board.add_alert((1000, 0), alert("b", [0]))
    assert [c.conversation_id for c in board.changed_since(seen)] == ["b"]
    assert parse_entry_id("1000-0") == (1000, 0) and parse_entry_id("1000-0<script>") is None


def test_context_only_turns_are_context_on_the_board():
    board = Board(window_ms=60_000, keep_turns=100)
    board.add_label((1, 0), label("c", 0, "anger", 0.9, speaker="Customer"))
    board.add_label((2, 0), context("c", 1))
    conv = board.conversations["c"]
    row = summary(conv)
    # The row: who spoke last, the latest labelled turn's label, the context-only turn a cell with no emotion.
    assert (row["speaker"], row["label"], row["confidence"]) == ("Agent", "anger", 0.9)
    negative = negative_score(conv.turns[0].probs)
    assert row["turns"] == [[0, "anger", round(negative, 3)], [1, None, None]]
    assert conv.risk()[1] == round(negative, 4)  # the latest labelled turn's: context-only turns have none
    from pipeline.watch.board import detail

    turns = detail(conv, None)["turns"]
    assert turns[1] == {"turn_id": 1, "speaker": "Agent", "label": None, "confidence": None, "negative": None,
                        "probs": {}, "context_only": True}
    assert turns[0]["context_only"] is False and len(turns[0]["probs"]) == len(MELD)
    board.add_label((3, 0), context("only-agent", 0))
    assert summary(board.conversations["only-agent"])["label"] is None
    assert board.conversations["only-agent"].risk()[1] == 0.0


def test_a_malformed_label_is_refused():
    board = Board(window_ms=60_000, keep_turns=100)
    bad = LabelMessage("c", 0, "joy", 0.5, ["not", "a", "map"], None, "m", "1-0", 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        board.add_label((1, 0), bad)
    assert board.shown() == []


def test_binding_off_loopback_requires_a_token():
    with pytest.raises(ConfigError, match="--token"):
        WatchConfig(host="0.0.0.0")
    assert WatchConfig(host="0.0.0.0", token=TOKEN).token == TOKEN
    assert WatchConfig(host="::1").token is None and WatchConfig(host="localhost").token is None
    with pytest.raises(ConfigError, match="^token:"):
        WatchConfig(token="short")
    with pytest.raises(ConfigError, match="^window_min:"):
        WatchConfig(window_min=0)


def test_the_command_fails_at_start_naming_the_flag(run_cli):
    result = run_cli("watch", "--host", "0.0.0.0", env={"DIALOGUELLM_WATCH_TOKEN": ""})
    assert result.returncode == 2
    assert "--token" in result.stderr and "Traceback" not in result.stderr


# ---- the server, for real -----------------------------------------------------------------------

@pytest.fixture
def streams(r):
    from pipeline.stream.client import delete_keys

    prefix = f"test:watch:{uuid.uuid4().hex[:10]}"
    yield {"labels_stream": f"{prefix}:labels", "alerts_stream": f"{prefix}:alerts", "in_stream": f"{prefix}:turns"}
    delete_keys(r, f"{prefix}:*")


@pytest.fixture
def serve(streams):
    """Start a watch server on the test's streams: `serve(**config) -> url`; stopped afterwards."""
    started = []

    def start(**overrides) -> str:
        server = WatchServer(WatchConfig(**{"redis_url": REDIS_URL, "port": 0, **streams, **overrides}))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        if server.server.started:
            server.stop()


def push(r, streams, *messages) -> None:
    for m in messages:
        r.xadd(streams["alerts_stream" if isinstance(m, AlertMessage) else "labels_stream"], m.encode())


def first_event(url: str, **headers) -> tuple[str, str, dict]:
    """(id, event, data) of the first event `GET /events` sends."""
    fields = {}
    with httpx.stream("GET", url + "events", headers=headers, timeout=5) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if not line:
                return fields["id"], fields["event"], json.loads(fields["data"])
            key, _, value = line.partition(": ")
            fields[key] = value
    raise AssertionError("the stream ended before an event")


def detail_of(url: str, cid: str):
    reply = httpx.get(url + "api/conversation", params={"id": cid})
    return reply.json() if reply.status_code == 200 else None


def test_token_is_required_off_loopback_as_bearer_or_cookie_from_the_query(serve):
    base = serve(host="0.0.0.0", token=TOKEN).replace("0.0.0.0", "127.0.0.1")
    refused = httpx.get(base + "api/meta")
    assert refused.status_code == 401 and "default-src 'self'" in refused.headers["content-security-policy"]
    assert httpx.get(base + "api/meta", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert httpx.get(base + "api/meta", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert httpx.get(base + "?token=wrong-token-0123456789").status_code == 401

    opened = httpx.get(base + f"?token={TOKEN}")
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with httpx.Client(base_url=base, cookies=opened.cookies) as browser:
        page = browser.get("/")
        assert page.status_code == 200 and '<div id="board"' in page.text
        assert browser.get("/events?token=x").status_code == 401  # a wrong token in the address still fails
    other_sites_cookie = f"odd name=1; dialoguellm_watch={TOKEN}"
    assert httpx.get(base + "api/meta", headers={"Cookie": other_sites_cookie}).status_code == 200


def test_page_has_a_content_security_policy_and_no_inline_script(serve):
    url = serve()
    page = httpx.get(url)
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script src=\"/static/app.js\" defer></script>" in page.text
    assert page.text.count("<script") == 1 and " on" not in page.text.replace("\n", " ").split("<body", 1)[1].split(">")[0]
    assert "http" not in page.text.replace('href="/', "").replace('src="/', "")  # nothing from the internet
    for name in ("app.js", "style.css"):
        asset = httpx.get(url + "static/" + name)
        assert asset.status_code == 200 and "content-security-policy" in asset.headers
        assert "https://" not in asset.text and "innerHTML" not in asset.text


def test_the_page_itself_lists_the_conversations_riskiest_first_escaped(r, streams, serve):
    # What `chromium --headless --dump-dom` or any client without the script sees.
    push(r, streams, label("calm", 0), label("upset", 0, "anger", 0.9), label("xss", 0, speaker=XSS),
         alert("alerted", [0]), label("alerted", 0))
    page = httpx.get(serve()).text
    listed = re.findall(r'class="cid" role="cell">([^<]*)<', page)
    assert listed[:2] == ["alerted", "upset"] and sorted(listed) == ["alerted", "calm", "upset", "xss"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img" not in page
    assert '<p id="empty" class="empty" hidden>' in page


def test_without_a_token_only_local_host_names_are_answered(serve):
    url = serve()
    assert httpx.get(url, headers={"Host": "attacker.example:8765"}).status_code == 421
    assert httpx.get(url.replace("127.0.0.1", "localhost")).status_code == 200


def test_reconnecting_with_last_event_id_gets_everything_changed_since(r, streams, serve):
    push(r, streams, label("a", 0), label("b", 0))
    url = serve()
    seen, kind, data = first_event(url)
    assert kind == "sync" and {row["id"] for row in data["rows"]} == {"a", "b"}

    push(r, streams, label("b", 1, "anger"), label("c", 0))
    # In a later millisecond: entries of the two streams within one millisecond share the cursor
    # (the "at or after" rule), and the last check below is about the alert alone.
    time.sleep(0.002)
    push(r, streams, alert("a", [0]))
    # The alert is in another stream: the server may read it after "c"; wait for both.
    assert wait_for(lambda: detail_of(url, "c") and (detail_of(url, "a") or {}).get("alerts"))
    _, kind, data = first_event(url, **{"Last-Event-ID": seen})
    assert kind == "sync"
    assert {row["id"]: len(row["turns"]) for row in data["rows"]} == {"a": 1, "b": 2, "c": 1}
    assert set(data["keep"]) == {"a", "b", "c"}
    latest, _, data = first_event(url, **{"Last-Event-ID": first_event(url)[0]})
    assert data["rows"] == [] or {row["id"] for row in data["rows"]} <= {"a"}  # only what the last id itself touched


def test_labels_reach_a_connected_page_as_updates(r, streams, serve):
    url = serve()
    with httpx.stream("GET", url + "events", timeout=5) as reply:
        lines = reply.iter_lines()
        assert next(lines) == "retry: 1000"
        push(r, streams, label("live", 0, "fear"))
        got = []
        for line in lines:
            got.append(line)
            if line.startswith("data:") and '"live"' in line:
                break
    assert "event: update" in got
    row = json.loads(got[-1].removeprefix("data: "))["rows"][0]
    assert row["id"] == "live" and row["label"] == "fear" and row["risk"][1] == pytest.approx(0.85)  # fear 0.7 + 3 x 0.05


def test_texts_only_with_show_text_and_malformed_entries_are_skipped(r, streams, serve):
    push(r, streams, label("c", 0), label("c", 1))
    r.xadd(streams["labels_stream"], {"payload": b"\xc1 not msgpack"})
    r.hset(f"{streams['in_stream']}:ctx:c", "1", msgpack.packb({"speaker": "Customer", "text": "Where is my parcel?"}))
    private = serve()
    assert all("text" not in t for t in detail_of(private, "c")["turns"])
    shown = serve(show_text=True)
    assert [t["text"] for t in detail_of(shown, "c")["turns"]] == [None, "Where is my parcel?"]
    assert httpx.get(shown + "api/conversation", params={"id": "nobody"}).status_code == 404


def test_the_server_only_reads_redis(r, streams):
    """Runs as a Redis user allowed XREAD, XRANGE, XREVRANGE, HGETALL (and PING, TYPE) only."""
    user, password = f"watch-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    r.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "resetchannels", "-@all",
                      "+xread", "+xrange", "+xrevrange", "+hgetall", "+ping", "+type")
    try:
        push(r, streams, label("c", 0), alert("c", [0]))
        config = WatchConfig(redis_url=REDIS_URL.replace("redis://", f"redis://{user}:{password}@"), port=0,
                             show_text=True, **streams)
        with WatchServer(config) as server:
            push(r, streams, label("c", 1))
            assert wait_for(lambda: len((detail_of(server.url, "c") or {"turns": []})["turns"]) == 2)
        assert acl_denials(r, user) == []
    finally:
        r.execute_command("ACL", "DELUSER", user)



# ---- the page in a headless Chromium ------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    from pipeline.watch.browser import headless_chromium

    try:
        driver = headless_chromium()
    except ConfigError as e:
        pytest.skip(str(e))
    yield driver
    driver.quit()


def until(browser, predicate, timeout: float = 2.0):
    """Wait for the page (a functional wait: fails when it does not happen within `timeout` s)."""
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.02).until(predicate)


def open_page(browser, url: str) -> None:
    browser.get(url)
    until(browser, lambda d: d.find_element("id", "status").text == "live", 10)


def row_of(browser, cid: str):
    return browser.execute_script(
        "return [...document.querySelectorAll('#board .row')].find(r => r.dataset.cid === arguments[0]) || null", cid)


ROW_STATE = """
const row = [...document.querySelectorAll('#board .row')].find(r => r.dataset.cid === arguments[0]);
const texts = (selector) => [...row.querySelectorAll(selector)].map(e => e.textContent);
return row && {turns: [...row.querySelectorAll('.cell')].map(c => Number(c.dataset.turn)),
               cells: [...row.children].map(c => c.className), open: texts('.badge.open'),
               closed: texts('.badge.closed'), speaker: texts('.speaker')[0], cid: texts('.cid')[0],
               label: texts('.label')[0], sparkline: row.querySelectorAll('svg.sparkline polyline').length};
"""


def row_state(browser, cid: str) -> dict | None:
    """What a conversation's row shows, read in one step (rows are redrawn as labels come)."""
    return browser.execute_script(ROW_STATE, cid)


def strip_of(browser, cid: str) -> list[int]:
    row = row_state(browser, cid)
    return row["turns"] if row else []


def test_labels_appear_on_the_page_within_two_seconds_in_turn_order(r, streams, serve, browser):
    open_page(browser, serve())
    push(r, streams, label("call-1", 0, "anger", speaker="Customer"))
    until(browser, lambda d: strip_of(d, "call-1") == [0])
    push(r, streams, label("call-1", 1, "joy", speaker="Agent"))
    until(browser, lambda d: strip_of(d, "call-1") == [0, 1])
    push(r, streams, label("call-1", 3, "sadness", speaker="Customer"), label("call-1", 2, "neutral", speaker="Agent"))
    until(browser, lambda d: strip_of(d, "call-1") == [0, 1, 2, 3])
    row = row_state(browser, "call-1")
    assert row["cells"] == ["cid", "speaker", "label", "turns", "spark", "alert"]
    assert row["speaker"] == "Customer" and row["label"].startswith("sadness")  # the latest turn by id
    assert row["sparkline"] == 1
    assert "sadness" in browser.find_element("id", "legend").text


def test_an_alert_badge_shows_its_episode_and_then_that_it_closed(r, streams, serve, browser):
    push(r, streams, *(label("risky", t, "anger" if t >= 3 else "neutral", 0.5) for t in range(6)),
         label("calm", 0, "fear", 0.9))
    open_page(browser, serve())
    until(browser, lambda d: strip_of(d, "risky") and strip_of(d, "calm"))
    assert browser.execute_script("return document.querySelector('#board .row').dataset.cid") == "calm"
    push(r, streams, alert("risky", [3, 4, 5]))
    badge = until(browser, lambda d: row_state(d, "risky")["open"])[0]
    assert "negative_run" in badge and "turns 3–5" in badge and "0.91" in badge
    assert browser.execute_script("return document.querySelector('#board .row').dataset.cid") == "risky"
    push(r, streams, alert("risky", [3, 4, 5], closed=True))
    until(browser, lambda d: row_state(d, "risky")["closed"] == ["negative_run closed"])
    assert row_state(browser, "risky")["open"] == []


def test_the_conversation_view_shows_every_probability_and_no_text_by_default(r, streams, serve, browser):
    messages = [label("call-7", 0, "neutral", 0.64), label("call-7", 1, "anger", 0.82), label("call-7", 2, "fear", 0.55)]
    push(r, streams, *messages)
    r.hset(f"{streams['in_stream']}:ctx:call-7", "0", msgpack.packb({"speaker": "Customer", "text": "secret"}))
    open_page(browser, serve())
    until(browser, lambda d: row_of(d, "call-7")).click()
    turns = until(browser, lambda d: d.find_elements("css selector", "#turns tr.turn") if
                  len(d.find_elements("css selector", "#turns tr.turn")) == 3 else None)
    for tr, message in zip(turns, messages):
        bars = {b.get_attribute("data-label"): b.find_element("css selector", ".value").text
                for b in tr.find_elements("css selector", ".bar")}
        assert bars == {name: f"{p:.2f}" for name, p in message.probs.items()}
    assert browser.find_elements("css selector", "#turns .text") == [] and "secret" not in browser.page_source
    push(r, streams, label("call-7", 3, "sadness"))
    until(browser, lambda d: len(d.find_elements("css selector", "#turns tr.turn")) == 4)


CONTEXT_STATE = """
const row = [...document.querySelectorAll('#board .row')].find(r => r.dataset.cid === arguments[0]);
return row && [...row.querySelectorAll('.cell')].map(c => [Number(c.dataset.turn), c.className, c.title]);
"""


def test_context_only_turns_show_as_context_not_as_an_emotion(r, streams, serve, browser):
    """A call as `serve --label-speakers '(?i)^customer$'` writes it: the agent's turns grey, "not
    labelled", no probability bars; the customers' turns as ever."""
    push(r, streams, label("mixed", 0, "anger", 0.8), context("mixed", 1), label("mixed", 2, "joy", 0.6),
         context("mixed", 3), context("agent-only", 0))
    page = httpx.get(serve()).text  # the page's own HTML (no script) shows them as context too
    assert page.count('class="cell e-context"') == 3 and "not labelled (context only)" in page
    open_page(browser, serve())
    until(browser, lambda d: strip_of(d, "mixed") == [0, 1, 2, 3])
    cells = browser.execute_script(CONTEXT_STATE, "mixed")
    assert [c[1] for c in cells] == ["cell e-anger", "cell e-context", "cell e-joy", "cell e-context"]
    assert cells[1][2] == "turn 1: not labelled (context only)" and "anger" in cells[0][2]
    row = row_state(browser, "mixed")
    assert row["speaker"] == "Agent" and row["label"].startswith("joy") and row["sparkline"] == 1
    only = until(browser, lambda d: row_state(d, "agent-only"))
    assert only["label"] == "not labelled" and only["sparkline"] == 0
    assert "not labelled" in browser.find_element("id", "legend").text
    row_of(browser, "mixed").click()
    turns = until(browser, lambda d: d.find_elements("css selector", "#turns tr.turn") if
                  len(d.find_elements("css selector", "#turns tr.turn")) == 4 else None)
    classes = [tr.get_attribute("class") for tr in turns]
    assert classes == ["turn", "turn context", "turn", "turn context"]
    bars = [len(tr.find_elements("css selector", ".bar")) for tr in turns]
    assert bars == [len(MELD), 0, len(MELD), 0]
    assert turns[1].find_element("css selector", "td.label").text == "not labelled"
    assert "context only" in turns[1].find_element("css selector", "td.probs").text


SPOKEN = {  # turn id -> (as spoken, as the page must show it)
    0: ("My card is 4111 1111 1111 1111, expiry 12/27.", "My card is <CARD>, expiry 12/27."),
    1: ("Order 4111 1111 1111 1112 never came.", "Order 4111 1111 1111 1112 never came."),  # fails Luhn
    2: ("Write to jo.doe@example.co.uk or call +44 20 7946 0958.", "Write to <EMAIL> or call <PHONE>."),
    3: ("Refund to GB82 WEST 1234 5698 7654 32, my cell is (415) 555-2671.",
        "Refund to <IBAN>, my cell is <PHONE>."),
}


def _texts_of_conversation(r, streams, cid: str) -> None:
    push(r, streams, *(label(cid, t, "anger") for t in SPOKEN))
    for t, (said, _) in SPOKEN.items():
        r.hset(f"{streams['in_stream']}:ctx:{cid}", str(t), msgpack.packb({"speaker": "Customer", "text": said}))


def test_the_page_shows_texts_redacted_and_an_order_number_as_it_is(r, streams, serve, browser):
    _texts_of_conversation(r, streams, "call-pci")
    open_page(browser, serve(show_text=True))
    until(browser, lambda d: row_of(d, "call-pci")).click()
    shown = until(browser, lambda d: [e.text for e in d.find_elements("css selector", "#turns .text")]
                  if len(d.find_elements("css selector", "#turns .text")) == len(SPOKEN) else None)
    assert shown == [page for _, page in SPOKEN.values()]
    source = browser.page_source
    for secret in ("4111 1111 1111 1111", "jo.doe", "7946", "GB82", "555-2671"):
        assert secret not in source


def test_raw_text_only_when_asked_for_loudly(r, streams, serve):
    _texts_of_conversation(r, streams, "call-raw")
    redacted = serve(show_text=True)
    assert [t["text"] for t in detail_of(redacted, "call-raw")["turns"]] == [page for _, page in SPOKEN.values()]
    raw = serve(show_raw_text=True)  # implies show_text
    assert [t["text"] for t in detail_of(raw, "call-raw")["turns"]] == [said for said, _ in SPOKEN.values()]


def test_markup_from_redis_shows_as_text(r, streams, serve, browser):
    from selenium.common.exceptions import NoAlertPresentException

    cid = "<script>alert(2)</script>"
    push(r, streams, label(cid, 0, "anger", speaker=XSS))
    open_page(browser, serve())
    until(browser, lambda d: row_state(d, cid))
    assert row_state(browser, cid)["speaker"] == XSS and row_state(browser, cid)["cid"] == cid
    row_of(browser, cid).click()
    until(browser, lambda d: d.find_elements("css selector", "#turns tr.turn"))
    assert browser.find_element("id", "detail-title").text == cid
    assert browser.find_element("css selector", "#turns td.speaker").text == XSS
    assert browser.execute_script("return document.querySelectorAll('img, script:not([src])').length") == 0
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text


def test_a_page_that_reconnects_misses_nothing(r, streams, browser):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = WatchConfig(redis_url=REDIS_URL, port=port, **streams)
    push(r, streams, label("a", 0))
    with WatchServer(config) as server:
        open_page(browser, server.url)
        until(browser, lambda d: strip_of(d, "a") == [0])
    until(browser, lambda d: d.find_element("id", "status").text != "live")
    # Written while the page had no server: a new turn of a listed conversation, a new conversation.
    push(r, streams, label("a", 1), label("b", 0, "anger"), alert("b", [0]))
    with WatchServer(config):
        until(browser, lambda d: strip_of(d, "a") == [0, 1] and strip_of(d, "b") == [0], 10)
        assert row_state(browser, "b")["open"]
        assert browser.find_element("id", "status").text == "live"


def test_screenshot_of_a_realistic_board(r, streams, serve, browser, data_root, tmp_path):
    """~8 MELD test conversations with labels peaked at their gold emotion, one open alert.
    DIALOGUELLM_SCREENSHOT=reports/watch.png writes it there (the README's picture)."""
    import random

    from pipeline.core.datasets import load_dataset

    rng = random.Random(7)
    conversations = [c for c in load_dataset("meld", "test", data_root) if 6 <= len(c.turns) <= 14][:8]
    for conv in conversations:
        for turn in conv.turns:
            peak = rng.uniform(0.45, 0.93)
            weights = {x: rng.random() for x in MELD if x != turn.label}
            probs = {turn.label: peak, **{x: (1 - peak) * w / sum(weights.values()) for x, w in weights.items()}}
            message = LabelMessage(f"call-{conv.conversation_id}", turn.turn_id, turn.label, peak, probs, None,
                                   "SmolLM2-135M-Instruct", "0-1", 180.0, speaker=turn.speaker)
            push(r, streams, message)
            r.hset(f"{streams['in_stream']}:ctx:call-{conv.conversation_id}", str(turn.turn_id),
                   msgpack.packb({"speaker": turn.speaker, "text": turn.text}))
    worst = max(conversations, key=lambda c: sum(t.label in NEGATIVE_LABELS["meld"] for t in c.turns))
    negative_turns = [t.turn_id for t in worst.turns if t.label in NEGATIVE_LABELS["meld"]][-3:]
    worst_id = f"call-{worst.conversation_id}"
    push(r, streams, alert(worst_id, negative_turns))

    browser.set_window_size(1440, 900)
    open_page(browser, serve(show_text=True))
    until(browser, lambda d: len(d.find_elements("css selector", "#board .row")) == len(conversations))
    row_of(browser, worst_id).click()
    until(browser, lambda d: d.find_elements("css selector", "#turns .text"))
    path = Path(os.environ.get("DIALOGUELLM_SCREENSHOT") or tmp_path / "watch.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.engine
def test_demo_serves_the_watch_page_before_it_pushes(run_cli, tiny_model, data_root):
    result = run_cli("demo", "--watch", "0", "--conversation", "1", "--model", str(tiny_model), "--max-model-len",
                     "256", "--kv-cache-gib", "1", "--redis", REDIS_URL)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[1].startswith("watch: http://127.0.0.1:")
    assert lines.index(lines[1]) < next(i for i, line in enumerate(lines) if line.startswith("pushed"))
    assert lines[-1].startswith("worker stopped cleanly")
