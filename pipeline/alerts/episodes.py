"""One conversation's escalation state: labels put in turn order, then episodes opened and closed.

Pure: the consumer loads a `ConversationState` from Redis, feeds it labels, writes it back with
the alerts it returned. Everything is in the state, so any consumer can pick up where another
stopped.

Order. Labels can arrive out of turn order (several engines, retries). A label is held until the
turn before it has been applied, or for `reorder_wait_ms` after it was read (the turn before may
never be labelled: dead-lettered, or its id skipped). A label for a turn at or before the last
applied one came too late (or twice) and is not applied: counted, not evaluated.

Episodes. For each rule, only turns whose speaker matches count: `turns` consecutive ones at or
above the threshold open an episode (an alert with `closed` false); once open, `clear_after`
consecutive ones below close it (the same alert, `closed` true). Turns of other speakers neither
extend nor break a run.

Context-only turns (flagged `context_only` by a worker's `--label-speakers`: a speaker it does not
label) carry no emotion: they take their place in the turn order (the next turn does not wait for
them) and count for no rule, neither extending nor breaking a run, whatever a rule's `speaker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import msgpack

from pipeline.alerts.rules import Rule
from pipeline.core.wire import AlertMessage

HELD_CAP = 64       # labels held per conversation; past it the earliest is applied at once
EPISODE_TURNS = 50  # turn ids an episode keeps (its latest); a long episode stays a small state


@dataclass(frozen=True)
class LabelView:
    """What the rules need of one label: the turn, who spoke, when the label was written, its probabilities."""

    turn_id: int
    source_id: str
    speaker: str
    written_ms: int
    probs: dict[str, float]
    held_ms: int = 0  # when it was admitted (Redis time): its wait for the turn before it starts then
    context_only: bool = False  # a turn the worker did not label: ordered, never scored


@dataclass
class RuleState:
    """One rule's progress in one conversation."""

    run: list[list] = field(default_factory=list)  # [turn_id, source_id, score] of the current streak
    open: bool = False
    below: int = 0
    turn_ids: list[int] = field(default_factory=list)
    source_ids: list[str] = field(default_factory=list)
    score: float = 0.0
    opened_at: float = 0.0

    def alert(self, conversation_id: str, rule: str, closed: bool) -> AlertMessage:
        return AlertMessage(conversation_id, rule, list(self.turn_ids), list(self.source_ids),
                            round(self.score, 4), self.opened_at, closed)


@dataclass
class ConversationState:
    """Everything the alerts consumer knows of one conversation."""

    last_turn: int | None = None
    held: dict[int, LabelView] = field(default_factory=dict)
    rules: dict[str, RuleState] = field(default_factory=dict)
    late: int = 0  # labels that came after a later turn was applied (not applied)

    def to_bytes(self) -> bytes:
        return msgpack.packb({
            "last_turn": self.last_turn, "late": self.late,
            "held": [asdict(v) for v in self.held.values()],
            "rules": {name: asdict(s) for name, s in self.rules.items()},
        }, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes | None) -> ConversationState:
        if not data:
            return cls()
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
        known = {f.name for f in fields(LabelView)}  # a state written by a newer version may hold more
        held = {v["turn_id"]: LabelView(**{k: x for k, x in v.items() if k in known}) for v in raw["held"]}
        return cls(raw["last_turn"], held, {n: RuleState(**s) for n, s in raw["rules"].items()}, raw["late"])

    def earliest_release_ms(self, reorder_wait_ms: int) -> int | None:
        """When the earliest held label may be applied without the turn before it (None: nothing held)."""
        if not self.held:
            return None
        return min(v.held_ms for v in self.held.values()) + reorder_wait_ms

    def admit(self, label: LabelView, now_ms: int) -> bool:
        """Hold `label` for ordering; False when it came too late or twice (it is not applied)."""
        if (self.last_turn is not None and label.turn_id <= self.last_turn) or label.turn_id in self.held:
            self.late += 1
            return False
        self.held[label.turn_id] = replace(label, held_ms=now_ms)
        return True

    def release(self, now_ms: int, reorder_wait_ms: int) -> list[LabelView]:
        """The held labels that can be applied now, in turn order."""
        out = []
        while self.held:
            first = min(self.held)
            view = self.held[first]
            in_order = self.last_turn is not None and first == self.last_turn + 1
            waited = view.held_ms + reorder_wait_ms <= now_ms
            if not (in_order or waited or first == 0 or len(self.held) > HELD_CAP):
                break
            out.append(self.held.pop(first))
            self.last_turn = first
        return out


def apply(state: ConversationState, conversation_id: str, labels: Sequence[LabelView],
          rules: Sequence[Rule]) -> list[AlertMessage]:
    """Apply labels (in turn order) to every rule; returns the alerts they open and close."""
    alerts = []
    for label in labels:
        if label.context_only:  # context: no emotion to score, so no rule sees it
            continue
        for rule in rules:
            if not rule.matches(label.speaker):
                continue
            s = state.rules.setdefault(rule.name, RuleState())
            alert = _step(s, rule, label, rule.score(label.probs))
            if alert is not None:
                alerts.append(s.alert(conversation_id, rule.name, alert == "closed"))
                if alert == "closed":
                    state.rules[rule.name] = RuleState()
    return alerts


def _step(s: RuleState, rule: Rule, label: LabelView, score: float) -> str | None:
    high = score >= rule.threshold
    if s.open:
        if high:
            s.below = 0
            _add(s, label.turn_id, label.source_id, score)
            return None
        s.below += 1
        return "closed" if s.below >= rule.clear_after else None
    if not high:
        s.run = []
        return None
    s.run.append([label.turn_id, label.source_id, score])
    if len(s.run) < rule.turns:
        return None
    s.open, s.below, s.opened_at = True, 0, label.written_ms / 1000
    for turn_id, source_id, run_score in s.run:
        _add(s, turn_id, source_id, run_score)
    s.run = []
    return "open"


def _add(s: RuleState, turn_id: int, source_id: str, score: float) -> None:
    s.turn_ids = (s.turn_ids + [turn_id])[-EPISODE_TURNS:]
    s.source_ids = (s.source_ids + [source_id])[-EPISODE_TURNS:]
    s.score = max(s.score, score)


def label_view(message: Any, entry_id: str) -> LabelView:
    """The `LabelView` of a decoded `LabelMessage` read from the labels stream at `entry_id`."""
    from pipeline.core.wire import entry_time_ms

    if message.context_only:
        return LabelView(int(message.turn_id), str(message.source_id), str(message.speaker),
                         entry_time_ms(entry_id), {}, context_only=True)
    return LabelView(int(message.turn_id), str(message.source_id), str(message.speaker),
                     entry_time_ms(entry_id), {str(k): float(v) for k, v in message.probs.items()})
