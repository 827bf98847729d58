"""Manifests for batch labelling: one row per turn, in CSV, JSONL or Parquet, read into one shape.

Columns (our layout): `conversation_id`, `turn_id`, `speaker`, `text`, and optionally
`video_uri` with `start`/`end` (seconds), `description`, `label` (gold). MELD's CSV is read
as it is: `Dialogue_ID`/`Utterance_ID` name the clip `dia{D}_utt{U}.mp4` under the video root,
the segment being the whole clip (`EndTime` − `StartTime`), and `Emotion` is the gold label.
Every input column is kept; the normalised ones are added with a leading underscore, and
`_row` is the row's position in the manifest (what resuming keys on).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.context import select_context
from pipeline.core.errors import DataError
from pipeline.core.labels import get_label_set

REQUIRED = ("conversation_id", "turn_id", "speaker", "text")
OUTPUT_COLUMNS = ("label", "confidence", "probs", "description", "error", "context_only")
OUTPUT_TYPES = {"label": "large_string", "confidence": "float64", "probs": "large_string",
                "description": "large_string", "error": "large_string", "context_only": "bool"}
ROW = "manifest_row"  # the output's column for `_row`
MELD_COLUMNS = ("Dialogue_ID", "Utterance_ID", "Speaker", "Utterance")
TEXT_COLUMNS = ("text", "Utterance")  # the utterance, as our layout and MELD's name it


def read_table(path: str | Path) -> Any:
    """The manifest as a pandas DataFrame, whatever its format."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not readable ({e})") from None
    raise DataError(f"{path}: unknown manifest type (known: .csv, .jsonl, .parquet)")


def normalise(df: Any, video_root: str | Path | None, label_set: str, where: str) -> Any:
    """Add the `_`-columns every stage reads; a row that cannot be used names itself."""
    import pandas as pd

    df = df.reset_index(drop=True)
    out = df.copy()
    out["_row"] = range(len(df))
    if all(c in df.columns for c in MELD_COLUMNS):
        out["_conversation_id"] = df["Dialogue_ID"].astype(str)
        out["_turn_id"] = _integers(df["Utterance_ID"], where, "Utterance_ID")
        out["_speaker"], out["_text"] = df["Speaker"].astype(str), df["Utterance"].astype(str)
        gold = df["Emotion"] if "Emotion" in df.columns else None
        if video_root is not None:
            root = Path(video_root)
            out["_video_uri"] = [str(root / f"dia{d}_utt{u}.mp4") for d, u in zip(out["_conversation_id"],
                                                                                  out["_turn_id"])]
            out["_start"] = 0.0
            out["_end"] = [_clip_seconds(s, e) for s, e in zip(df.get("StartTime", [""] * len(df)),
                                                              df.get("EndTime", [""] * len(df)))]
    else:
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            raise DataError(f"{where}: missing column(s) {', '.join(missing)} (or MELD's {', '.join(MELD_COLUMNS)})")
        out["_conversation_id"] = df["conversation_id"].astype(str)
        out["_turn_id"] = _integers(df["turn_id"], where, "turn_id")
        out["_speaker"], out["_text"] = df["speaker"].astype(str), df["text"].astype(str)
        gold = df["label"] if "label" in df.columns else None
        if "video_uri" in df.columns:
            root = Path(video_root) if video_root is not None else None
            out["_video_uri"] = [_under(root, u) for u in df["video_uri"]]
            out["_start"] = pd.to_numeric(df.get("start", 0.0), errors="coerce").fillna(0.0)
            out["_end"] = pd.to_numeric(df.get("end", float("nan")), errors="coerce")
    if "_video_uri" not in out.columns:
        out["_video_uri"], out["_start"], out["_end"] = None, 0.0, float("nan")
    out["_description"] = df["description"] if "description" in df.columns else None
    out["_gold"] = _gold(gold, label_set, where)
    return out


def add_context(df: Any, z: int) -> Any:
    """`_context`: the up to `z` previous turns of the row's conversation (by turn id), as JSON
    `[[turn_id, speaker, text, description or null], ...]`, taken from the whole manifest (done rows
    included; a description is the manifest's own, not one the job computes from video)."""
    context = [None] * len(df)
    for _, group in df.groupby("_conversation_id", sort=False):
        descriptions = group["_description"] if "_description" in group else [None] * len(group)
        turns = {int(i): (int(i), s, x, d if isinstance(d, str) and d else None)
                 for i, s, x, d in zip(group["_turn_id"], group["_speaker"], group["_text"], descriptions)}
        for index, turn_id in zip(group.index, group["_turn_id"]):
            context[index] = json.dumps(select_context(int(turn_id), z, turns))
    df["_context"] = context
    return df


def _integers(column: Any, where: str, name: str) -> Any:
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | (values < 0) | (values != values.round())
    if bad.any():
        row = int(bad.idxmax())
        raise DataError(f"{where}: row {row + 1}: {name} must be an integer ≥ 0, got {column.iloc[row]!r}")
    return values.astype(int)


def _gold(column: Any, label_set: str, where: str) -> Any:
    if column is None:
        return None
    labels = get_label_set(label_set)
    gold = []
    for row, value in enumerate(column):
        if value is None or (isinstance(value, float) and value != value) or value == "":
            gold.append(None)
            continue
        gold.append(labels.normalize(str(value), f"{where}: row {row + 1}"))
    return gold


def _clip_seconds(start: str, end: str) -> float:
    """MELD's `00:14:38,127` timestamps to a clip length (NaN when absent: the whole file)."""
    def seconds(stamp: str) -> float:
        h, m, s = stamp.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    try:
        return max(0.0, seconds(end) - seconds(start))
    except (ValueError, AttributeError):
        return float("nan")


def _under(root: Path | None, uri: Any) -> str | None:
    if uri is None or (isinstance(uri, float) and uri != uri) or str(uri) == "":
        return None
    uri = str(uri)
    if root is None or "://" in uri or Path(uri).is_absolute():
        return uri
    return str(root / uri)


def output_columns(batch: Any, redact: Callable[[str], str] | None = None) -> Any:
    """Every input column, `label` … `context_only`, and `manifest_row`, as an Arrow table whose
    output columns have fixed types: a batch whose rows are all context only (or none has a
    description) would otherwise be written with null-typed columns, and the folder's files could
    not be read together. With `redact`, the utterance columns (`text`, MELD's `Utterance`) are
    written redacted."""
    import pyarrow as pa

    inputs = [c for c in batch.columns if not c.startswith("_") and c not in OUTPUT_COLUMNS]
    out = batch[inputs].copy()
    if redact is not None:
        for name in TEXT_COLUMNS:
            if name in out:
                out[name] = out[name].map(lambda t: redact(t) if isinstance(t, str) else t)
    for name in OUTPUT_COLUMNS:
        out[name] = batch[name]
    out["error"] = out["error"].replace("", None)
    out[ROW] = batch["_row"]
    table = pa.Table.from_pandas(out, preserve_index=False)
    for name, kind in OUTPUT_TYPES.items():
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(kind))
    return table
