"""The msgpack wire format of the Redis streams: turns in, labels out, rejected entries aside.

Every turn and label entry has one field, `payload`, holding a msgpack map. Parsing never
raises anything but `MalformedMessage`, whose text is the reason written to the dead-letter
stream. Pure: no Redis here, the stream flows pass bytes in and out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

from pipeline.core.errors import DialogueLLMError
from pipeline.core.labels import LABEL_SETS
from pipeline.core.turns import Turn, VideoSegment

PAYLOAD = "payload"
FLAG_NO_DESCRIPTION = "no_description"
FLAG_PARTIAL_CONTEXT = "partial_context"
# A turn of a speaker the worker does not label (`--label-speakers`): kept as context, no emotion.
FLAG_CONTEXT_ONLY = "context_only"


class MalformedMessage(DialogueLLMError):
    """An input entry that can never be labelled; its text says why."""


@dataclass(frozen=True)
class TurnMessage:
    """One conversation turn as pushed by a client."""

    conversation_id: str
    turn_id: int
    speaker: str
    text: str
    video: VideoSegment | None = None
    description: str | None = None
    adapter: str | None = None
    label_set: str = "meld"

    @classmethod
    def from_turn(cls, turn: Turn, label_set: str = "meld", adapter: str | None = None) -> TurnMessage:
        return cls(turn.conversation_id, turn.turn_id, turn.speaker, turn.text, turn.video, turn.description,
                   adapter, label_set)

    def to_turn(self) -> Turn:
        return Turn(self.conversation_id, self.turn_id, self.speaker, self.text, self.video, self.description)

    def encode(self) -> dict[str, bytes]:
        """The entry's fields, ready for XADD."""
        body: dict[str, Any] = {
            "conversation_id": self.conversation_id, "turn_id": self.turn_id,
            "speaker": self.speaker, "text": self.text,
        }
        if self.video is not None:
            body["video"] = asdict(self.video)
        for name in ("description", "adapter"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.label_set != "meld":
            body["label_set"] = self.label_set
        return {PAYLOAD: msgpack.packb(body, use_bin_type=True)}


@dataclass(frozen=True)
class TurnSchema:
    """What a worker accepts: text length, and the adapter names it was started with."""

    max_text_chars: int = 2000
    adapters: Collection[str] | None = None  # None: any name (checked later by the engine)

    def parse(self, fields: Mapping[Any, Any]) -> TurnMessage:
        """The turn in an entry's fields, or `MalformedMessage` naming what is wrong."""
        body = _payload_map(fields)
        conversation_id = _required(body, "conversation_id", str)
        turn_id = _required(body, "turn_id", int)
        if turn_id < 0:
            raise MalformedMessage(f"turn_id must be ≥ 0, got {turn_id}")
        speaker = _required(body, "speaker", str)
        text = _required(body, "text", str)
        if not conversation_id:
            raise MalformedMessage("conversation_id is empty")
        if not text.strip():
            raise MalformedMessage("text is empty")
        if len(text) > self.max_text_chars:
            raise MalformedMessage(f"text has {len(text)} characters, more than the limit of {self.max_text_chars}")
        description = _optional(body, "description", str)
        adapter = _optional(body, "adapter", str)
        if adapter is not None and self.adapters is not None and adapter not in self.adapters:
            raise MalformedMessage(f"unknown adapter {adapter!r} (served: {', '.join(sorted(self.adapters))})")
        label_set = _optional(body, "label_set", str) or "meld"
        if label_set not in LABEL_SETS:
            raise MalformedMessage(f"unknown label_set {label_set!r} (known: {', '.join(LABEL_SETS)})")
        return TurnMessage(conversation_id, turn_id, speaker, text, _video(body.get("video")), description,
                           adapter, label_set)


@dataclass(frozen=True)
class LabelMessage:
    """The worker's answer for one input entry.

    A turn of a speaker the worker does not label (`label_speakers`) is answered too, so every
    entry has its output: flagged `context_only`, with `label` and `confidence` nil and `probs`
    empty (see `context_only`).
    """

    conversation_id: str
    turn_id: int
    label: str | None
    confidence: float | None
    probs: dict[str, float]
    adapter: str | None
    model: str
    source_id: str
    latency_ms: float
    description: str | None = None
    flags: list[str] = field(default_factory=list)
    speaker: str = ""
    label_set: str | None = None  # None: written before labels named it (`label_set_of(probs)` then)

    def encode(self) -> dict[str, bytes]:
        return {PAYLOAD: msgpack.packb(asdict(self), use_bin_type=True)}

    @property
    def context_only(self) -> bool:
        """A turn kept as context and not labelled: no label, confidence or probabilities."""
        return FLAG_CONTEXT_ONLY in (self.flags or ())

    @classmethod
    def decode(cls, fields: Mapping[Any, Any]) -> LabelMessage:
        """The message in an entry; keys this version does not know are ignored (forward compatible)."""
        return _decode_known(cls, fields)


def label_set_of(label: LabelMessage) -> str | None:
    """The label set a label was given in: the one it names, else the one whose labels are exactly
    its probabilities' keys (labels written before they named it); None when neither is known."""
    if isinstance(label.label_set, str) and label.label_set in LABEL_SETS:
        return label.label_set
    keys = set(label.probs) if isinstance(label.probs, dict) else set()
    return next((name for name, s in LABEL_SETS.items() if keys and set(s.labels) == keys), None)


@dataclass(frozen=True)
class ContextTurn:
    """A turn as a correction keeps it: what the prompt of a later training example needs."""

    turn_id: int
    speaker: str
    text: str


@dataclass(frozen=True)
class CorrectionMessage:
    """A supervisor's correction of one served label (the corrections stream, written by `watch
    --corrections`). It changes nothing already written: the label stays in the labels stream.

    `source_id`, `label_set`, `served_label`, `adapter` and `model` are those of the label
    corrected (as the page's server read them from the labels stream, never from the request);
    `who` is the name its token has in the tokens file; `at` the Unix time (s) it was made. `text`
    is the turn's text and `context` the turns before it (oldest first), from the context store
    when the correction was made (redacted unless the server was told otherwise; None / fewer
    turns when the store no longer kept them), so an export still has them after the store expired.
    """

    conversation_id: str
    turn_id: int
    source_id: str
    label_set: str
    served_label: str
    corrected_label: str
    who: str
    at: float
    adapter: str | None = None
    model: str = ""
    speaker: str = ""
    text: str | None = None
    context: list[ContextTurn] = field(default_factory=list)

    def encode(self) -> dict[str, bytes]:
        return {PAYLOAD: msgpack.packb(asdict(self), use_bin_type=True)}

    @classmethod
    def decode(cls, fields: Mapping[Any, Any]) -> CorrectionMessage:
        """The correction in an entry; unknown keys are ignored (forward compatible)."""
        message = _decode_known(cls, fields)
        context = [ContextTurn(t["turn_id"], str(t.get("speaker", "")), t["text"]) for t in message.context or ()
                   if isinstance(t, dict) and isinstance(t.get("text"), str) and isinstance(t.get("turn_id"), int)]
        return dataclasses.replace(message, context=context)


@dataclass(frozen=True)
class AlertMessage:
    """An escalation episode of one rule in one conversation: written once when it opens, once when it closes.

    `turn_ids`/`source_ids` are the turns at or above the threshold that make up the episode (the
    input entries' ids, as on their labels); `score` is the highest turn score among them;
    `opened_at` is the Unix time (s) at which the opening label was written.
    """

    conversation_id: str
    rule: str
    turn_ids: list[int]
    source_ids: list[str]
    score: float
    opened_at: float
    closed: bool = False

    def encode(self) -> dict[str, bytes]:
        return {PAYLOAD: msgpack.packb(asdict(self), use_bin_type=True)}

    @classmethod
    def decode(cls, fields: Mapping[Any, Any]) -> AlertMessage:
        """The alert in an entry; unknown keys are ignored (forward compatible)."""
        return _decode_known(cls, fields)


CONTROL_OPS = ("load", "default", "unload")
MAX_NAME_CHARS = 64
MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class ControlMessage:
    """One change to what every worker serves, on the control stream (`dialoguellm adapters ...`).

    `load NAME PATH`: serve the adapter folder PATH (under the worker's `--adapters-root`) as NAME;
    `default NAME share`: that share of turns without an `adapter` field, chosen by conversation,
    goes to NAME (1.0: NAME becomes the default); `unload NAME`: stop serving NAME. `by` and `at`
    say who sent it and when (Unix seconds), for the logs.
    """

    op: str
    name: str
    path: str | None = None
    share: float = 1.0
    by: str = ""
    at: float = 0.0
    digest: str | None = None  # of the files, as the sender saw them (workers compute their own)

    def encode(self) -> dict[str, bytes]:
        body: dict[str, Any] = {"op": self.op, "name": self.name, "by": self.by, "at": self.at}
        if self.op == "load":
            body["path"] = self.path
            if self.digest is not None:
                body["digest"] = self.digest
        if self.op == "default":
            body["share"] = self.share
        return {PAYLOAD: msgpack.packb(body, use_bin_type=True)}

    def describe(self) -> str:
        """The message as the command line that sent it."""
        if self.op == "load":
            return f"load {self.name} {self.path}"
        if self.op == "default":
            return f"default {self.name}" + ("" if self.share == 1 else f" --share {self.share:g}")
        return f"unload {self.name}"

    @classmethod
    def parse(cls, fields: Mapping[Any, Any]) -> ControlMessage:
        """The message in an entry's fields, or `MalformedMessage` naming what is wrong."""
        body = _payload_map(fields)
        op = _required(body, "op", str)
        if op not in CONTROL_OPS:
            raise MalformedMessage(f"unknown op {op!r} (known: {', '.join(CONTROL_OPS)})")
        name = check_adapter_name(_required(body, "name", str))
        path = None
        if op == "load":
            path = _required(body, "path", str)
            if not path or len(path) > MAX_PATH_CHARS or not path.isprintable():
                raise MalformedMessage("path is empty, over-long or holds control characters")
        share = 1.0
        if op == "default" and body.get("share") is not None:
            share = body["share"]
            if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
                raise MalformedMessage(f"share must be a number in (0, 1], got {share!r}")
        by = _optional(body, "by", str) or ""
        at = body.get("at") if isinstance(body.get("at"), (int, float)) else 0.0
        digest = _optional(body, "digest", str) if op == "load" else None
        return cls(op, name, path, float(share), by[:MAX_NAME_CHARS], float(at), digest)


def check_adapter_name(name: str) -> str:
    """`name` if it can name an adapter (letters, digits, `-`, `_`, `.`; not `base`), else `MalformedMessage`."""
    if not name or len(name) > MAX_NAME_CHARS or not all((c.isascii() and c.isalnum()) or c in "-_." for c in name):
        raise MalformedMessage(f"adapter name {name[:MAX_NAME_CHARS]!r} is not 1 to {MAX_NAME_CHARS} letters, "
                               "digits, '-', '_' or '.'")
    if name == "base":
        raise MalformedMessage("adapter name 'base' is reserved for the base model")
    return name


@dataclass(frozen=True)
class DeadLetter:
    """An entry set aside: its original bytes untouched, where it came from and why."""

    payload: bytes
    source_id: str
    error: str
    deliveries: int

    def encode(self) -> dict[str, Any]:
        return {PAYLOAD: self.payload, "source_id": self.source_id, "error": self.error,
                "deliveries": self.deliveries}

    @classmethod
    def decode(cls, fields: Mapping[Any, Any]) -> DeadLetter:
        text = lambda name: as_text(_field(fields, name))  # noqa: E731
        return cls(_field(fields, PAYLOAD) or b"", text("source_id"), text("error"), int(text("deliveries")))


def original_payload(fields: Mapping[Any, Any]) -> bytes:
    """The bytes to keep when an entry is dead-lettered (the whole entry when it has no payload)."""
    payload = _field(fields, PAYLOAD)
    if payload is not None:
        return payload if isinstance(payload, bytes) else str(payload).encode()
    return msgpack.packb({as_text(k): v for k, v in fields.items()}, use_bin_type=True)


def entry_time_ms(entry_id: str) -> int:
    """The Redis server time at which an entry was added (the first part of its id)."""
    return int(entry_id.split("-", 1)[0])


def _decode_known(cls: Any, fields: Mapping[Any, Any]) -> Any:
    payload = msgpack.unpackb(_field(fields, PAYLOAD), raw=False)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in payload.items() if k in known})


def _payload_map(fields: Mapping[Any, Any]) -> dict:
    """An entry's msgpack payload as a map, or `MalformedMessage` naming what is wrong."""
    payload = _field(fields, PAYLOAD)
    if payload is None:
        raise MalformedMessage(f"no {PAYLOAD!r} field")
    try:
        body = msgpack.unpackb(payload, raw=False)
    except Exception as e:  # msgpack raises several unrelated types for bad bytes
        raise MalformedMessage(f"payload is not msgpack ({type(e).__name__})") from None
    if not isinstance(body, dict):
        raise MalformedMessage(f"payload is a msgpack {type(body).__name__}, expected a map")
    return body


def _field(fields: Mapping[Any, Any], name: str) -> Any:
    return fields.get(name.encode(), fields.get(name))


def as_text(value: Any) -> str:
    """A Redis reply (bytes, or str with decode_responses) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _required(body: dict, name: str, kind: type) -> Any:
    if name not in body:
        raise MalformedMessage(f"missing field {name!r}")
    return _typed(body, name, kind)


def _optional(body: dict, name: str, kind: type) -> Any:
    return None if body.get(name) is None else _typed(body, name, kind)


def _typed(body: dict, name: str, kind: type) -> Any:
    value = body[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedMessage(f"field {name!r} must be {_KINDS[kind]}, got {type(value).__name__}")
    return value


_KINDS = {str: "a string", int: "an integer"}


def _video(value: Any) -> VideoSegment | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedMessage(f"field 'video' must be a map, got {type(value).__name__}")
    uri = _required(value, "uri", str)
    bounds = []
    for name in ("start", "end"):
        bound = value.get(name)
        if not isinstance(bound, (int, float)) or isinstance(bound, bool) or not math.isfinite(bound) or bound < 0:
            raise MalformedMessage(f"video {name!r} must be a number of seconds ≥ 0, got {bound!r}")
        bounds.append(float(bound))
    if bounds[1] < bounds[0]:
        raise MalformedMessage(f"video ends ({bounds[1]}) before it starts ({bounds[0]})")
    return VideoSegment(uri, bounds[0], bounds[1])
