"""MELD (Poria et al., 2019): `{split}_sent_emo.csv`, one row per utterance."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from pipeline.core.datasets.base import DatasetSpec, make_turn
from pipeline.core.errors import DataError
from pipeline.core.labels import LabelSet
from pipeline.core.turns import Conversation

_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def read_meld_csv(path: Path, labels: LabelSet) -> list[Conversation]:
    """Group rows by `Dialogue_ID`, order them by `Utterance_ID`."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in _COLUMNS[:2] + _COLUMNS[3:] if c not in (reader.fieldnames or ())]
            if missing:
                raise DataError(f"{path}: not a MELD CSV, missing columns {', '.join(missing)}")
            dialogues: dict[str, list] = defaultdict(list)
            for row_number, row in enumerate(reader, start=2):
                where = f"{path}: row {row_number}"
                try:
                    utterance_id = int(row["Utterance_ID"])
                except (TypeError, ValueError):
                    raise DataError(f"{where}: Utterance_ID is not an integer") from None
                conv_id = str(row["Dialogue_ID"]).strip()
                raw = {"text": row["Utterance"], "speaker": row["Speaker"], "label": row.get("Emotion")}
                dialogues[conv_id].append(make_turn(raw, labels, where, conv_id, utterance_id))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not readable ({e})") from None
    return [
        Conversation(cid, tuple(sorted(turns, key=lambda t: t.turn_id)), labels.name)
        for cid, turns in dialogues.items()
    ]


MELD = DatasetSpec(
    name="meld",
    label_set="meld",
    folder="MELD",
    files={s: f"{s}_sent_emo.csv" for s in ("train", "dev", "test")},
    reader=read_meld_csv,
)
