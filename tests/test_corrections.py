"""Corrections from the watch page (`watch --corrections`), against the real Redis at 127.0.0.1:6379
and in a headless Chromium: who comes from the token, cross-site and token-less writes are refused
and write nothing, the least-privilege ACL user; then `corrections export` and `forget`.

Streams are the test's own (`test:watch:<random>:*`, from test_watch's fixtures) and deleted afterwards.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgpack
import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.labels import LABEL_SETS
from pipeline.core.wire import CorrectionMessage, LabelMessage, label_set_of
from pipeline.watch.board import Board
from pipeline.watch.config import WatchConfig
from pipeline.watch.server import WatchServer

httpx = pytest.importorskip("httpx")

import test_watch  # noqa: E402
from conftest import REDIS_URL, acl_denials  # noqa: E402
from test_watch import label, open_page, push, row_of, until, wait_for  # noqa: E402

# test_watch's fixtures, shared: the test's own streams, a server on them, the headless Chromium.
streams, serve, browser = test_watch.streams, test_watch.serve, test_watch.browser

ALICE, BOB, READER = "alice-token-0123456789abcdef", "bob-token-0123456789abcdefgh", "reader-token-0123456789abc"
WRITE = {"X-DialogueLLM-Write": "1", "Content-Type": "application/json"}


@pytest.fixture
def tokens(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# name token\nalice {ALICE}\n\nbob {BOB}\n")
    return str(path)


@pytest.fixture
def corrections(streams):
    """The test's streams with a corrections stream of its own."""
    return {**streams, "corrections_stream": streams["labels_stream"].replace(":labels", ":corrections")}


@pytest.fixture
def serve_corrections(corrections, tokens):
    started = []

    def start(**overrides) -> str:
        config = {"redis_url": REDIS_URL, "port": 0, **corrections, "corrections": True, "tokens_file": tokens,
                  **overrides}
        server = WatchServer(WatchConfig(**config))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        if server.server.started:
            server.stop()


def written(r, corrections) -> list[CorrectionMessage]:
    return [CorrectionMessage.decode(f) for _, f in r.xrange(corrections["corrections_stream"])]


def call(r, corrections, cid: str = "call-1") -> None:
    """A labelled call of three turns on the board, its texts in the context store."""
    said = ["Hello, I need help with my order.", "Sure, what is the order number?",
            "It never came and my card 4111 1111 1111 1111 was charged!"]
    for t, text in enumerate(said):
        push(r, corrections, label(cid, t, "neutral"))
        r.hset(f"{corrections['in_stream']}:ctx:{cid}", str(t),
               msgpack.packb({"speaker": "Customer" if t % 2 == 0 else "Agent", "text": text}))


def post(url: str, body: dict, token: str | None = ALICE, **headers) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url + "api/corrections", content=json.dumps(body), headers={**WRITE, **auth, **headers})


def on_board(url: str, cid: str, turns: int, token: str = ALICE) -> bool:
    reply = httpx.get(url + "api/conversation", params={"id": cid}, headers={"Authorization": f"Bearer {token}"})
    return reply.status_code == 200 and len(reply.json()["turns"]) == turns


# ---- pure ---------------------------------------------------------------------------------------

def test_the_board_shows_the_served_label_and_the_correction_beside_it():
    from pipeline.watch.board import detail

    board = Board(window_ms=60_000, keep_turns=100)
    board.add_label((1, 0), label("c", 0, "neutral"))
    board.add_correction((2, 0), CorrectionMessage("c", 0, "1-0", "meld", "neutral", "anger", "alice", 5.0))
    board.add_correction((3, 0), CorrectionMessage("c", 0, "1-0", "meld", "neutral", "sadness", "bob", 6.0))
    (turn,) = detail(board.conversations["c"], None)["turns"]
    assert turn["label"] == "neutral" and turn["label_set"] == "meld"
    assert turn["corrected"] == {"label": "sadness", "who": "bob", "at": 6.0}  # the latest wins


def test_a_labels_label_set_is_named_or_read_off_its_probabilities():
    assert label_set_of(label("c", 0)) == "meld"  # written before labels named it: MELD's 7 labels
    named = LabelMessage("c", 0, "mad", 0.5, {"mad": 0.5}, None, "m", "1-0", 1.0, label_set="emorynlp")
    assert label_set_of(named) == "emorynlp"
    assert label_set_of(LabelMessage("c", 0, "x", 0.5, {"x": 1.0}, None, "m", "1-0", 1.0)) is None


def test_corrections_need_a_tokens_file_and_a_bad_line_is_named(tmp_path, tokens):
    with pytest.raises(ConfigError, match="^tokens_file: --corrections needs --tokens-file"):
        WatchConfig(corrections=True)
    bad = tmp_path / "bad"
    bad.write_text(f"alice {ALICE}\nbob short\n")
    with pytest.raises(ConfigError, match="^tokens_file: .* line 2: a token is at least 16"):
        WatchConfig(tokens_file=str(bad))
    bad.write_text(f"alice {ALICE}\nbob {ALICE}\n")
    with pytest.raises(ConfigError, match="line 2: this token is already given to 'alice'"):
        WatchConfig(tokens_file=str(bad))
    assert WatchConfig(host="0.0.0.0", tokens_file=tokens).token is None  # named tokens guard it off loopback
    with pytest.raises(ConfigError, match="^corrections_stream: must differ"):
        WatchConfig(corrections_stream="dialoguellm:labels")


# ---- over HTTP, for real ------------------------------------------------------------------------

def test_a_correction_lands_once_with_who_from_the_token_and_the_texts_redacted(r, corrections, serve_corrections):
    call(r, corrections)
    url = serve_corrections()
    assert wait_for(lambda: on_board(url, "call-1", 3))
    # The request names a `who` and a served label: both ignored, they come from the token and the labels stream.
    reply = post(url, {"conversation_id": "call-1", "turn_id": 2, "label": "anger", "who": "mallory",
                       "served_label": "joy", "source_id": "0-1"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["who"] == "alice" and reply.json()["written"] == 1
    (c,) = written(r, corrections)
    assert (c.conversation_id, c.turn_id, c.corrected_label, c.who) == ("call-1", 2, "anger", "alice")
    assert (c.source_id, c.label_set, c.served_label, c.model, c.speaker) == ("3-0", "meld", "neutral", "test-model",
                                                                              "Customer")
    assert c.text == "It never came and my card <CARD> was charged!" and "4111" not in repr(c)
    assert [(t.turn_id, t.speaker) for t in c.context] == [(0, "Customer"), (1, "Agent")]
    assert c.at > 0
    # The label itself is untouched; the page shows both.
    assert [LabelMessage.decode(f).label for _, f in r.xrange(corrections["labels_stream"])] == ["neutral"] * 3
    shown = wait_for(lambda: httpx.get(url + "api/conversation", params={"id": "call-1"},
                                       headers={"Authorization": f"Bearer {BOB}"}).json()["turns"][2].get("corrected"))
    assert shown["label"] == "anger" and shown["who"] == "alice"
    # Bulk: several corrections in one request, each one entry; bob's token names bob.
    reply = post(url, {"corrections": [{"conversation_id": "call-1", "turn_id": 0, "label": "joy"},
                                       {"conversation_id": "call-1", "turn_id": 1, "label": "neutral"}]}, BOB)
    assert reply.status_code == 200 and reply.json()["written"] == 2
    assert [(c.turn_id, c.who) for c in written(r, corrections)] == [(2, "alice"), (0, "bob"), (1, "bob")]


@pytest.mark.parametrize("token, headers, status", [
    (None, {}, 403),                                                 # no token
    ("wrong-token-0123456789abcdef", {}, 403),                       # not a token of the file
    (READER, {}, 403),                                               # the page's --token opens it, names nobody
    (ALICE, {"X-DialogueLLM-Write": ""}, 403),                       # the custom header missing
    (ALICE, {"Origin": "http://evil.example"}, 403),                 # cross-site
    (ALICE, {"Sec-Fetch-Site": "cross-site"}, 403),
    (ALICE, {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}, 403),  # another origin of this site
    (ALICE, {"Content-Type": "text/plain"}, 403),                    # what a form can send
])
def test_writes_without_a_named_token_or_from_another_site_are_refused_and_write_nothing(
        r, corrections, serve_corrections, token, headers, status):
    call(r, corrections)
    url = serve_corrections(token=READER)
    assert wait_for(lambda: on_board(url, "call-1", 3))
    reply = post(url, {"conversation_id": "call-1", "turn_id": 2, "label": "anger"}, token, **headers)
    assert reply.status_code == status, reply.text
    assert written(r, corrections) == []


def test_a_cookie_write_must_say_where_it_comes_from(r, corrections, serve_corrections):
    call(r, corrections)
    url = serve_corrections()
    opened = httpx.get(url + f"?token={ALICE}")
    with httpx.Client(base_url=url, cookies=opened.cookies) as client:
        assert wait_for(lambda: client.get("/api/conversation", params={"id": "call-1"}).status_code == 200)
        body = json.dumps({"conversation_id": "call-1", "turn_id": 0, "label": "joy"})
        assert client.post("/api/corrections", content=body, headers=WRITE).status_code == 403
        origin = url.rstrip("/")
        assert client.post("/api/corrections", content=body, headers={**WRITE, "Origin": origin}).status_code == 200
    assert [c.who for c in written(r, corrections)] == ["alice"]


def test_bad_corrections_write_nothing(r, corrections, serve_corrections, serve):
    call(r, corrections)
    url = serve_corrections()
    assert wait_for(lambda: on_board(url, "call-1", 3))
    assert post(url, {"conversation_id": "call-1", "turn_id": 2, "label": "happiness"}).status_code == 422
    assert post(url, {"conversation_id": "call-1", "turn_id": 9, "label": "joy"}).status_code == 404
    assert post(url, {"conversation_id": "nobody", "turn_id": 0, "label": "joy"}).status_code == 404
    assert post(url, {"conversation_id": "call-1", "turn_id": "2", "label": "joy"}).status_code == 400
    # All or nothing: the first item is good, the second not.
    both = {"corrections": [{"conversation_id": "call-1", "turn_id": 0, "label": "joy"},
                            {"conversation_id": "call-1", "turn_id": 1, "label": "nope"}]}
    assert post(url, both).status_code == 422
    # Without --corrections the page is read-only: there is no route that writes.
    read_only = serve(corrections_stream=corrections["corrections_stream"])
    assert httpx.post(read_only + "api/corrections", content=b"{}", headers=WRITE).status_code in (404, 405)
    assert written(r, corrections) == []


def test_the_server_runs_as_a_user_that_may_only_xadd_to_the_corrections_stream(r, corrections, tokens):
    """The README's ACL user: reads what watch reads, writes only XADD to the corrections stream."""
    import redis

    user, password = f"watch-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    r.execute_command("ACL", "SETUSER", user, "on", f">{password}", "resetkeys", "%R~*",
                      f"%W~{corrections['corrections_stream']}", "resetchannels", "-@all", "+xread", "+xrange",
                      "+xrevrange", "+hgetall", "+ping", "+type", "+xadd")
    try:
        call(r, corrections)
        as_user = REDIS_URL.replace("redis://", f"redis://{user}:{password}@")
        config = WatchConfig(redis_url=as_user, port=0, corrections=True, tokens_file=tokens, show_text=True,
                             **corrections)
        with WatchServer(config) as server:
            assert wait_for(lambda: on_board(server.url, "call-1", 3))
            assert post(server.url, {"conversation_id": "call-1", "turn_id": 1, "label": "surprise"}).status_code == 200
            assert wait_for(lambda: httpx.get(server.url + "api/conversation", params={"id": "call-1"}, headers={
                "Authorization": f"Bearer {ALICE}"}).json()["turns"][1].get("corrected"))
        assert [c.corrected_label for c in written(r, corrections)] == ["surprise"]
        assert acl_denials(r, user) == []
        with redis.Redis.from_url(as_user) as limited:  # and that is all it may write
            with pytest.raises(redis.exceptions.NoPermissionError):
                limited.xadd(corrections["labels_stream"], {"payload": b"x"})
    finally:
        r.execute_command("ACL", "DELUSER", user)



# ---- the page in a headless Chromium ------------------------------------------------------------

class _Other(BaseHTTPRequestHandler):
    """Another origin of the same site (127.0.0.1, another port): the browser sends it our cookie."""

    page = b""

    def do_GET(self):  # noqa: N802 - the http.server API
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args):
        pass


def test_a_supervisor_corrects_a_turn_on_the_page_and_another_site_cannot(r, corrections, serve_corrections, browser):
    from selenium.webdriver.support.select import Select

    call(r, corrections)
    url = serve_corrections(show_text=True)
    open_page(browser, url + f"?token={ALICE}")  # sets the cookie, as a supervisor opens it once
    until(browser, lambda d: row_of(d, "call-1"), 5).click()
    picker = until(browser, lambda d: d.find_elements("css selector", '#turns tr.turn[data-turn="2"] select.correct'))
    options = [o.get_attribute("value") for o in Select(picker[0]).options]
    assert options == ["", *LABEL_SETS["meld"].labels]  # the turn's label set's labels, and only those
    Select(picker[0]).select_by_value("anger")
    shown = until(browser, lambda d: d.find_elements("css selector", '#turns tr.turn[data-turn="2"] .corrected'), 5)
    assert "anger" in shown[0].text and "alice" in shown[0].text
    assert "neutral" in browser.find_element("css selector", '#turns tr.turn[data-turn="2"] td.label').text
    assert "corrected to anger" in browser.find_element("id", "detail-note").text
    (c,) = written(r, corrections)
    assert (c.turn_id, c.corrected_label, c.who, c.served_label) == (2, "anger", "alice", "neutral")

    # A page of another origin on the same site: the cookie goes with its requests, which are refused.
    target = url + "api/corrections"
    body = json.dumps({"conversation_id": "call-1", "turn_id": 0, "label": "joy"})
    _Other.page = f"""<!doctype html><form id=f method=post action="{target}" enctype="text/plain">
        <input name='{body[:-2]}' value='{body[-2:]}'></form>""".encode()
    other = ThreadingHTTPServer(("127.0.0.1", 0), _Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{other.server_address[1]}/")
        statuses = browser.execute_async_script("""
            const done = arguments[arguments.length - 1], url = arguments[0], body = arguments[1];
            const plain = fetch(url, {method: "POST", mode: "no-cors", credentials: "include", body: body,
                                      headers: {"Content-Type": "text/plain"}}).then(() => "sent", () => "failed");
            const custom = fetch(url, {method: "POST", credentials: "include", body: body,
                                       headers: {"Content-Type": "application/json", "X-DialogueLLM-Write": "1"}})
                           .then((r) => String(r.status), () => "blocked");
            Promise.all([plain, custom]).then(done);""", target, body)
        assert statuses[1] == "blocked"  # the preflight is refused: the request itself never goes
        browser.find_element("id", "f").submit()
        until(browser, lambda d: "api/corrections" in d.current_url, 5)
        assert '"error"' in browser.page_source  # the server's 403 answer, nothing written
    finally:
        other.shutdown()
    assert len(written(r, corrections)) == 1


# ---- corrections export and forget --------------------------------------------------------------

def correction(cid: str, turn: int, label: str, at: float, who: str = "alice", text: str | None = "t",
               label_set: str = "meld", context: tuple = ()) -> CorrectionMessage:
    from pipeline.core.wire import ContextTurn

    return CorrectionMessage(cid, turn, f"{turn + 1}-0", label_set, "neutral", label, who, at, "default", "m",
                             "Customer", text, [ContextTurn(t, "Agent" if t % 2 else "Customer", x) for t, x in context])


def test_the_last_correction_wins_and_each_corrected_turn_keeps_the_turns_before_it():
    from pipeline.core.corrections import build_export, is_dev, latest_corrections
    from pipeline.core.redaction import redact

    messages = [correction("a", 2, "anger", 1.0, text="My card is 4111 1111 1111 1111.", context=((0, "Hi."), (1, "Yes?"))),
                correction("a", 2, "sadness", 2.0, who="bob", text="My card is 4111 1111 1111 1111.",
                           context=((0, "Hi."), (1, "Yes?"))),
                correction("b", 1, "joy", 3.0, text=None),                       # no text saved: from the store
                correction("c", 0, "fear", 4.0, text=None),                      # kept nowhere: left out
                correction("d", 0, "mad", 5.0, label_set="emorynlp")]
    latest = latest_corrections(messages)
    assert latest[("a", 2)].corrected_label == "sadness" and len(latest) == 4
    export = build_export(latest, "meld", 0.0, redact, {"b": {0: ("Customer", "Fine."), 1: ("Agent", "Great!")}})
    assert export.dev == [] and export.without_text == 1 and export.other_label_sets == {"emorynlp": 1}
    rows = {(r["conversation_id"], r["turn_id"]): r for r in export.train}
    assert list(rows) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    assert rows[("a", 2)]["label"] == "sadness" and rows[("a", 2)]["who"] == "bob"
    assert rows[("a", 2)]["text"] == "My card is <CARD>." and "label" not in rows[("a", 0)]
    assert rows[("b", 1)]["label"] == "joy" and rows[("b", 1)]["text"] == "Great!"
    # The split is by conversation, by a hash: the same every time, about the share asked for.
    held = [is_dev(f"call-{i}", 0.2) for i in range(2000)]
    assert held == [is_dev(f"call-{i}", 0.2) for i in range(2000)] and 0.17 < sum(held) / 2000 < 0.23


def test_export_writes_the_jsonl_format_and_forget_deletes_the_corrections(r, corrections, run_cli, tmp_path):
    from pipeline.core.datasets import load_dataset
    from pipeline.core.evaluation import label_requests

    stream = corrections["corrections_stream"]
    for i in range(30):
        r.xadd(stream, correction(f"call-{i}", 1, "anger", float(i), text=f"turn one of {i}, +44 20 7946 0958",
                                  context=((0, f"turn zero of {i}"),)).encode())
    r.xadd(stream, correction("call-0", 1, "joy", 99.0, text="turn one of 0", context=((0, "turn zero of 0"),)).encode())
    out = tmp_path / "export"
    result = run_cli("corrections", "export", "--out", str(out), "--redis", REDIS_URL, "--corrections-stream", stream,
                     "--in-stream", corrections["in_stream"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "31 corrections read (30 turns" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["label_set"] == "meld" and manifest["redacted"] is True
    parts = {split: load_dataset("jsonl", split, out, "meld") for split in ("train", "dev")}
    assert {c.conversation_id for c in parts["train"]}.isdisjoint({c.conversation_id for c in parts["dev"]})
    assert sum(len(p) for p in parts.values()) == 30 and parts["dev"]
    requests = [q for p in parts.values() for q in label_requests(p, 2)]
    assert len(requests) == 30 and all(len(q.context) == 1 for q in requests)
    assert all("<PHONE>" in q.turn.text or q.turn.conversation_id == "call-0" for q in requests)
    assert next(q.turn.label for q in requests if q.turn.conversation_id == "call-0") == "joy"

    forgotten = run_cli("forget", "--conversation", "call-3", "--redis", REDIS_URL, "--in-stream",
                        corrections["in_stream"], "--corrections-stream", stream, timeout=60)
    assert forgotten.returncode == 0, forgotten.stderr
    assert f"1 in {stream}" in forgotten.stdout
    left = [CorrectionMessage.decode(f).conversation_id for _, f in r.xrange(stream)]
    assert "call-3" not in left and len(left) == 30
