"""A dataset from supervisors' corrections (`dialoguellm corrections export`), pure.

Each corrected turn becomes a labelled row of the project's JSONL format (`pipeline.core.datasets.
jsonl`), with the turns before it as unlabelled rows of the same conversation, so `label_requests`
builds its prompt with the same context rule as serving. The last correction of a turn wins (in
stream order). Texts come from the corrections themselves (saved when they were made), else from
what the context store still keeps; they are redacted on the way out unless asked otherwise.
Conversations go to train or to the held-back dev part by a hash of their id: deterministic, and
a conversation never moves between parts as corrections accumulate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.wire import CorrectionMessage

TRAIN_FILE, DEV_FILE, MANIFEST_FILE = "train.jsonl", "dev.jsonl", "manifest.json"


def is_dev(conversation_id: str, dev_share: float) -> bool:
    """Whether a conversation is held back (the first 8 bytes of its id's SHA-256, as a share)."""
    digest = hashlib.sha256(conversation_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < dev_share


def latest_corrections(messages: Iterable[CorrectionMessage]) -> dict[tuple[str, int], CorrectionMessage]:
    """The last correction of each (conversation, turn), from messages in stream order."""
    latest: dict[tuple[str, int], CorrectionMessage] = {}
    for m in messages:
        latest.pop((m.conversation_id, m.turn_id), None)  # keep the dict in order of the latest
        latest[(m.conversation_id, m.turn_id)] = m
    return latest


@dataclass
class Export:
    """The rows of each part and what was counted on the way."""

    label_set: str
    train: list[dict[str, Any]] = field(default_factory=list)
    dev: list[dict[str, Any]] = field(default_factory=list)
    corrected: dict[str, int] = field(default_factory=lambda: {"train": 0, "dev": 0})
    conversations: dict[str, int] = field(default_factory=lambda: {"train": 0, "dev": 0})
    without_text: int = 0  # corrected turns whose text was kept nowhere: left out
    other_label_sets: dict[str, int] = field(default_factory=dict)


def build_export(corrections: Mapping[tuple[str, int], CorrectionMessage], label_set: str, dev_share: float,
                 redact: Callable[[str], str], stored: Mapping[str, Mapping[int, tuple[str, str]]] | None = None
                 ) -> Export:
    """The JSONL rows of the corrections of `label_set` (see the module's docstring); `stored` is
    what the context store still holds per conversation: turn id -> (speaker, text)."""
    stored = stored or {}
    export = Export(label_set)
    by_conversation: dict[str, list[CorrectionMessage]] = {}
    for m in corrections.values():
        if m.label_set != label_set:
            export.other_label_sets[m.label_set] = export.other_label_sets.get(m.label_set, 0) + 1
            continue
        by_conversation.setdefault(m.conversation_id, []).append(m)
    for cid in sorted(by_conversation):
        ordered = sorted(by_conversation[cid], key=lambda m: m.at)
        turns: dict[int, tuple[str, str]] = dict(stored.get(cid, {}))
        for m in ordered:  # a later correction's copy of a turn is the newer one
            turns.update({t.turn_id: (t.speaker, t.text) for t in m.context})
            if m.text is not None:
                turns[m.turn_id] = (m.speaker, m.text)
        labels = {m.turn_id: m for m in ordered if m.turn_id in turns}
        export.without_text += len({m.turn_id for m in ordered}) - len(labels)
        if not labels:
            continue
        part = "dev" if is_dev(cid, dev_share) else "train"
        rows = export.dev if part == "dev" else export.train
        for turn_id in sorted(t for t in turns if t <= max(labels)):
            speaker, text = turns[turn_id]
            if not text.strip():
                continue
            row: dict[str, Any] = {"conversation_id": cid, "turn_id": turn_id, "speaker": speaker,
                                   "text": redact(text)}
            if turn_id in labels:
                m = labels[turn_id]
                row.update(label=m.corrected_label, served_label=m.served_label, adapter=m.adapter, who=m.who)
            rows.append(row)
        export.corrected[part] += len(labels)
        export.conversations[part] += 1
    return export


def write_export(export: Export, out: str | Path, details: Mapping[str, Any]) -> dict[str, Any]:
    """`train.jsonl`, `dev.jsonl` and `manifest.json` (label set, counts, `details`) in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in ((TRAIN_FILE, export.train), (DEV_FILE, export.dev)):
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (out / name).write_text(text, encoding="utf-8")
    manifest = {"label_set": export.label_set, "corrected_turns": export.corrected,
                "conversations": export.conversations, "left_out_without_text": export.without_text, **details}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def export_label_set(folder: str | Path) -> str | None:
    """The label set an export folder (or a file in it) was written for; None when it has no manifest."""
    folder = Path(folder)
    manifest = (folder if folder.is_dir() else folder.parent) / MANIFEST_FILE
    if not manifest.is_file():
        return None
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("label_set")
    except (OSError, ValueError, AttributeError):
        return None
