"""The board: per-conversation summaries of the labels and alerts streams, ranked by risk (pure).

Entries are applied as they are read, from both streams. The board's cursor is the highest entry
id applied so far, and every conversation remembers the cursor at its last change: a page that
saw everything up to cursor X misses nothing if it is sent every conversation changed at or after
X (ids of the two streams interleave within a millisecond, hence "at or after"), plus the list of
conversations still on the board. Memory is bounded: a conversation leaves the board `window_ms`
after its last label, and keeps only its latest `keep_turns` turns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.wire import AlertMessage, CorrectionMessage, LabelMessage, label_set_of
from pipeline.watch.negative import negative_score

EntryId = tuple[int, int]
_ENTRY_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")


def parse_entry_id(text: str) -> EntryId | None:
    """`ms-seq` as a comparable pair, or None for anything else (ids also come from browsers)."""
    m = _ENTRY_ID.match(text.strip())
    return (int(m[1]), int(m[2])) if m else None


def format_entry_id(entry: EntryId) -> str:
    return f"{entry[0]}-{entry[1]}"


@dataclass(frozen=True)
class TurnLabel:
    """One turn as the page shows it: labelled, or context only (a speaker the worker does not
    label: `label`, `confidence` and `negative` None, no probabilities)."""

    turn_id: int
    speaker: str
    label: str | None
    confidence: float | None
    probs: dict[str, float]
    negative: float | None
    # What a correction of this turn records about the label it corrects (from the labels stream).
    source_id: str = ""
    adapter: str | None = None
    model: str = ""
    label_set: str | None = None

    @property
    def context_only(self) -> bool:
        return self.label is None

    @classmethod
    def of(cls, m: LabelMessage) -> TurnLabel:
        """Typed copies of the message's fields (ValueError/TypeError on a malformed one)."""
        if isinstance(m.turn_id, bool) or not isinstance(m.probs, dict):
            raise TypeError("turn_id must be an integer and probs a map")
        if m.context_only:
            return cls(int(m.turn_id), str(m.speaker), None, None, {}, None, str(m.source_id),
                       model=str(m.model), label_set=getattr(m, "label_set", None))
        probs = {str(k): float(v) for k, v in m.probs.items()}
        return cls(int(m.turn_id), str(m.speaker), str(m.label), float(m.confidence), probs, negative_score(probs),
                   str(m.source_id), None if m.adapter is None else str(m.adapter), str(m.model), label_set_of(m))


@dataclass(frozen=True)
class Correction:
    """The latest correction of one turn, as the page shows it beside the served label."""

    label: str
    who: str
    at: float

    @classmethod
    def of(cls, m: CorrectionMessage) -> Correction:
        return cls(str(m.corrected_label), str(m.who), float(m.at))


@dataclass(frozen=True)
class Episode:
    """The latest state of one alert rule in one conversation."""

    rule: str
    turn_ids: tuple[int, ...]
    score: float
    opened_at: float
    closed: bool

    @classmethod
    def of(cls, m: AlertMessage) -> Episode:
        return cls(str(m.rule), tuple(int(t) for t in m.turn_ids), float(m.score), float(m.opened_at),
                   bool(m.closed))


@dataclass
class ConversationRow:
    conversation_id: str
    last_label_ms: int
    changed: EntryId
    turns: dict[int, TurnLabel] = field(default_factory=dict)
    episodes: dict[str, Episode] = field(default_factory=dict)
    corrections: dict[int, Correction] = field(default_factory=dict)

    def latest(self) -> TurnLabel | None:
        """The latest turn, labelled or context only (whose speaker the row shows)."""
        return self.turns[max(self.turns)] if self.turns else None

    def latest_labelled(self) -> TurnLabel | None:
        """The latest turn with an emotion (context-only turns have none)."""
        labelled = [t for t in self.turns if not self.turns[t].context_only]
        return self.turns[max(labelled)] if labelled else None

    def has_open_alert(self) -> bool:
        return any(not e.closed for e in self.episodes.values())

    def risk(self) -> tuple[int, float, int]:
        """Higher is riskier: an open alert, then the latest labelled turn's negative score, then recency."""
        latest = self.latest_labelled()
        return (int(self.has_open_alert()), round(latest.negative, 4) if latest else 0.0, self.last_label_ms)

    def ordered_turns(self) -> list[TurnLabel]:
        return [self.turns[t] for t in sorted(self.turns)]


class Board:
    """Conversations with a label in the last `window_ms`, from entries applied in stream order."""

    def __init__(self, window_ms: int, keep_turns: int) -> None:
        self.window_ms, self.keep_turns = window_ms, keep_turns
        self.cursor: EntryId = (0, 0)
        self.conversations: dict[str, ConversationRow] = {}

    def add_label(self, entry_id: EntryId, message: LabelMessage) -> str:
        """Apply a label entry; returns its conversation id. Malformed: ValueError or TypeError."""
        turn = TurnLabel.of(message)
        conv = self._touch(str(message.conversation_id), entry_id)
        conv.last_label_ms = max(conv.last_label_ms, entry_id[0])
        conv.turns[turn.turn_id] = turn
        if len(conv.turns) > self.keep_turns:
            for old in sorted(conv.turns)[:-self.keep_turns]:
                del conv.turns[old]
        return conv.conversation_id

    def add_alert(self, entry_id: EntryId, message: AlertMessage) -> str:
        """Apply an alert entry: the latest entry of a (conversation, rule) is its state."""
        episode = Episode.of(message)
        conv = self._touch(str(message.conversation_id), entry_id)
        conv.episodes[episode.rule] = episode
        return conv.conversation_id

    def add_correction(self, entry_id: EntryId, message: CorrectionMessage) -> str:
        """Apply a correction entry: the latest correction of a turn is the one shown."""
        correction = Correction.of(message)
        turn_id = message.turn_id
        if isinstance(turn_id, bool) or not isinstance(turn_id, int):
            raise TypeError("turn_id must be an integer")
        conv = self._touch(str(message.conversation_id), entry_id)
        conv.corrections[turn_id] = correction
        if len(conv.corrections) > self.keep_turns:
            for old in sorted(conv.corrections)[:-self.keep_turns]:
                del conv.corrections[old]
        return conv.conversation_id

    def expire(self, now_ms: int) -> list[str]:
        """Drop conversations whose last label is older than the window; returns their ids."""
        gone = [cid for cid, c in self.conversations.items() if c.last_label_ms < now_ms - self.window_ms]
        for cid in gone:
            del self.conversations[cid]
        return gone

    def shown(self) -> list[ConversationRow]:
        """The conversations the page lists (those with a label), riskiest first."""
        listed = [c for c in self.conversations.values() if c.turns]
        return sorted(listed, key=lambda c: (tuple(-x for x in c.risk()), c.conversation_id))

    def changed_since(self, entry_id: EntryId) -> list[ConversationRow]:
        """Listed conversations changed at or after `entry_id` (see the module's docstring)."""
        return [c for c in self.shown() if c.changed >= entry_id]

    def _touch(self, conversation_id: str, entry_id: EntryId) -> ConversationRow:
        self.cursor = max(self.cursor, entry_id)
        conv = self.conversations.get(conversation_id)
        if conv is None:
            # An alert may come before any label of its conversation: it counts from the alert's time.
            conv = self.conversations[conversation_id] = ConversationRow(conversation_id, entry_id[0], self.cursor)
        conv.changed = self.cursor
        return conv


def summary(conv: ConversationRow) -> dict[str, Any]:
    """A listed conversation's row, as the page draws it (JSON-ready)."""
    latest = conv.latest()
    assert latest is not None, "only listed conversations have a row"
    # The current label is the latest labelled turn's (null while only context-only turns came);
    # a context-only turn is [turn_id, null, null] in the strip.
    labelled = conv.latest_labelled()
    return {
        "id": conv.conversation_id, "speaker": latest.speaker, "label": labelled.label if labelled else None,
        "confidence": round(labelled.confidence, 3) if labelled else None, "risk": list(conv.risk()),
        "turns": [[t.turn_id, t.label, _round(t.negative, 3)] for t in conv.ordered_turns()],
        "alerts": [episode_json(e) for e in conv.episodes.values()],
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def detail(conv: ConversationRow, texts: dict[int, dict[str, str]] | None) -> dict[str, Any]:
    """A conversation's view: every kept turn with its probabilities (and text, when given)."""
    turns = []
    for t in conv.ordered_turns():
        row: dict[str, Any] = {"turn_id": t.turn_id, "speaker": t.speaker, "label": t.label,
                               "confidence": _round(t.confidence, 4), "negative": _round(t.negative, 4),
                               "probs": {k: round(v, 4) for k, v in t.probs.items()},
                               "context_only": t.context_only}
        if t.label_set is not None:
            row["label_set"] = t.label_set
        correction = conv.corrections.get(t.turn_id)
        if correction is not None:
            row["corrected"] = {"label": correction.label, "who": correction.who, "at": correction.at}
        if texts is not None:
            row["text"] = texts.get(t.turn_id, {}).get("text")
        turns.append(row)
    return {"id": conv.conversation_id, "turns": turns, "alerts": [episode_json(e) for e in conv.episodes.values()]}


def episode_json(e: Episode) -> dict[str, Any]:
    return {"rule": e.rule, "turn_ids": list(e.turn_ids), "score": round(e.score, 4), "opened_at": e.opened_at,
            "closed": e.closed}
