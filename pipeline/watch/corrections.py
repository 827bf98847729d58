"""Corrections from the page (`watch --corrections`): a supervisor sets the emotion a turn really
expressed, and the server writes one `CorrectionMessage` per corrected turn to the corrections
stream (XADD, the only write the page's server makes).

Nothing the request names is trusted beyond which turn and which label: the turn must be on the
board (labelled, in the window), the label one of the turn's label set's, and everything else
the entry records (source id, label set, served label, adapter, model) comes from the label the
board read from the labels stream; `who` from the token (`pipeline.watch.security`). The turn's
text and the turns before it are read from the context store (HGETALL) and saved with the
correction, redacted unless `corrections_raw_text`, so a later export still has them once the
store has expired them. A request is all or nothing: one bad item and nothing is written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from pipeline.core.labels import LABEL_SETS
from pipeline.core.redaction import redactor
from pipeline.core.wire import ContextTurn, CorrectionMessage
from pipeline.stream.context_store import context_key
from pipeline.watch.config import WatchConfig

MAX_ITEMS = 1000  # corrections in one request (the bulk form); more: several requests
MAX_BODY = 1 << 20


class Refused(Exception):
    """A request that writes nothing: its HTTP status and a reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Requested:
    """What a request may name: a turn and the label it should have had."""

    conversation_id: str
    turn_id: int
    label: str


def parse_request(body: Any) -> list[Requested]:
    """`{"conversation_id", "turn_id", "label"}` or `{"corrections": [those, ...]}` (at most MAX_ITEMS)."""
    items = body.get("corrections") if isinstance(body, dict) and "corrections" in body else [body]
    if not isinstance(items, list) or not items:
        raise Refused(400, "expected {conversation_id, turn_id, label} or {corrections: [...]}")
    if len(items) > MAX_ITEMS:
        raise Refused(413, f"at most {MAX_ITEMS} corrections a request, got {len(items)}")
    out = []
    for i, item in enumerate(items):
        where = f"corrections[{i}]" if len(items) > 1 or "corrections" in body else "correction"
        if not isinstance(item, dict):
            raise Refused(400, f"{where}: expected an object")
        cid, turn_id, label = item.get("conversation_id"), item.get("turn_id"), item.get("label")
        if not isinstance(cid, str) or not cid:
            raise Refused(400, f"{where}.conversation_id: a non-empty string")
        if not isinstance(turn_id, int) or isinstance(turn_id, bool) or turn_id < 0:
            raise Refused(400, f"{where}.turn_id: an integer ≥ 0")
        if not isinstance(label, str) or not label:
            raise Refused(400, f"{where}.label: a non-empty string")
        out.append(Requested(cid, turn_id, label))
    return out


class CorrectionWriter:
    """Checks requested corrections against the board and writes them (one XADD each)."""

    def __init__(self, config: WatchConfig, redis: Any, board: Any, clock: Callable[[], float] = time.time) -> None:
        self.config, self.redis, self.board, self.clock = config, redis, board, clock
        self._redact = (lambda text: text) if config.corrections_raw_text else redactor(config.redaction)

    async def write(self, requested: Sequence[Requested], who: str) -> list[str]:
        """The new entries' ids, in the order asked; `Refused` (nothing written) if any item is wrong."""
        checked = [self._check(i, r, len(requested)) for i, r in enumerate(requested)]
        stored = await self._stored_turns({r.conversation_id for r in requested})
        at = self.clock()
        messages = await asyncio.to_thread(self._messages, checked, stored, who, at)
        pipe = self.redis.pipeline(transaction=False)
        for m in messages:
            pipe.xadd(self.config.corrections_stream, m.encode())
        return [ids.decode() if isinstance(ids, bytes) else str(ids) for ids in await pipe.execute()]

    def _check(self, i: int, r: Requested, n: int) -> tuple[Requested, Any]:
        where = f"corrections[{i}]" if n > 1 else "correction"
        conv = self.board.conversations.get(r.conversation_id)
        turn = conv.turns.get(r.turn_id) if conv is not None else None
        if turn is None:
            raise Refused(404, f"{where}: turn {r.turn_id} of {r.conversation_id!r} is not on the board")
        if turn.context_only:
            raise Refused(409, f"{where}: turn {r.turn_id} of {r.conversation_id!r} is context only: its speaker "
                               "is not labelled (--label-speakers), so it has no emotion to correct")
        if turn.label_set is None or turn.label_set not in LABEL_SETS:
            raise Refused(409, f"{where}: the label set of turn {r.turn_id} of {r.conversation_id!r} is not known")
        labels = LABEL_SETS[turn.label_set].labels
        if r.label not in labels:
            raise Refused(422, f"{where}.label: {r.label!r} is not a label of {turn.label_set} "
                               f"({', '.join(labels)})")
        return r, turn

    async def _stored_turns(self, conversation_ids: set[str]) -> dict[str, dict]:
        ids = sorted(conversation_ids)
        pipe = self.redis.pipeline(transaction=False)
        for cid in ids:
            pipe.hgetall(context_key(self.config.in_stream, cid))
        return dict(zip(ids, await pipe.execute(), strict=True))

    def _messages(self, checked: list[tuple[Requested, Any]], stored: dict[str, dict], who: str,
                  at: float) -> list[CorrectionMessage]:
        out = []
        for r, turn in checked:
            turns = {}
            for k, v in stored.get(r.conversation_id, {}).items():
                try:
                    value = msgpack.unpackb(v, raw=False)
                    turn_id = int(k)
                except (ValueError, TypeError):
                    continue
                if isinstance(value, dict) and isinstance(value.get("text"), str):
                    turns[turn_id] = value
            own = turns.get(r.turn_id)
            context = [ContextTurn(t, str(turns[t].get("speaker", "")), self._redact(turns[t]["text"]))
                       for t in sorted(turns) if t < r.turn_id]
            out.append(CorrectionMessage(
                r.conversation_id, r.turn_id, turn.source_id, turn.label_set, turn.label, r.label, who, at,
                turn.adapter, turn.model, turn.speaker, self._redact(own["text"]) if own else None, context))
        return out
