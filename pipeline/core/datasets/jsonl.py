"""Users' own conversations: JSON Lines, one turn per line.

Each line: `conversation_id` (str), `turn_id` (int ≥ 0), `speaker` (str), `text` (str, non-empty),
and optionally `label`, `description` (str) and `video` (`{"uri", "start", "end"}`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from pipeline.core.datasets.base import DatasetSpec, make_turn
from pipeline.core.errors import DataError
from pipeline.core.labels import LabelSet
from pipeline.core.turns import Conversation


def read_jsonl(path: Path, labels: LabelSet) -> list[Conversation]:
    dialogues: dict[str, list] = defaultdict(list)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not readable ({e})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}: row {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object")
        conv_id, turn_id = row.get("conversation_id"), row.get("turn_id")
        if not isinstance(conv_id, (str, int)) or isinstance(conv_id, bool) or str(conv_id) == "":
            raise DataError(f"{where}: conversation_id must be a non-empty string")
        if not isinstance(turn_id, int) or isinstance(turn_id, bool) or turn_id < 0:
            raise DataError(f"{where}: turn_id must be an integer ≥ 0")
        dialogues[str(conv_id)].append(make_turn(row, labels, where, str(conv_id), turn_id))
    return [
        Conversation(cid, tuple(sorted(turns, key=lambda t: t.turn_id)), labels.name)
        for cid, turns in dialogues.items()
    ]


JSONL = DatasetSpec(
    name="jsonl",
    label_set="meld",
    folder="jsonl",
    files={s: f"{s}.jsonl" for s in ("train", "dev", "test")},
    reader=read_jsonl,
)
