"""What every dataset loader shares: locating files and building conversations from rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import envs
from pipeline.core.errors import DataError
from pipeline.core.labels import LabelSet, get_label_set
from pipeline.core.turns import Conversation, Turn, VideoSegment

DATA_ENV = "DIALOGUELLM_DATA"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_data_root(data: str | Path | None) -> Path:
    """The explicit path, else `$DIALOGUELLM_DATA`, else `../shared/data` beside the checkout."""
    if data:
        return Path(data).expanduser()
    if envs.read(DATA_ENV):
        return Path(envs.read(DATA_ENV)).expanduser()
    for candidate in (Path.cwd().parent / "shared" / "data", _REPO_ROOT.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    raise DataError(f"no data path given: pass --data or set ${DATA_ENV}")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its name, label set, where each split lives under a root, and its reader."""

    name: str
    label_set: str
    folder: str
    files: dict[str, str]
    reader: Callable[[Path, LabelSet], list[Conversation]]

    def locate(self, split: str, root: Path) -> Path:
        """The split's file: `root` itself when it is a file, else looked up under it."""
        if root.is_file():
            return root
        if split not in self.files:
            raise DataError(f"{self.name} has no {split} split (known: {', '.join(self.files)})")
        for base in (root / self.folder, root):
            path = base / self.files[split]
            if path.is_file():
                return path
        raise DataError(f"{self.name} {split} split not found: {root / self.folder / self.files[split]}")

    def load(self, path: Path, label_set: str | None = None) -> list[Conversation]:
        if not path.is_file():
            raise DataError(f"file not found: {path}")
        return self.reader(path, get_label_set(label_set or self.label_set))


def read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None


def make_turn(
    row: dict[str, Any], labels: LabelSet, where: str, conversation_id: str, turn_id: int
) -> Turn:
    """Validate one raw row (`speaker`, `text`, optional `label`, `video`, `description`)."""
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: empty utterance")
    label = row.get("label")
    video = row.get("video")
    if video is not None:
        try:
            video = VideoSegment(str(video["uri"]), float(video["start"]), float(video["end"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: video must be a map with uri, start and end") from None
    return Turn(
        conversation_id=conversation_id,
        turn_id=turn_id,
        speaker=str(row.get("speaker") or "Speaker").strip(),
        text=" ".join(text.split()),
        video=video,
        description=row.get("description") or None,
        label=labels.normalize(str(label), where) if label not in (None, "") else None,
    )


def dialogues_from_lists(
    path: Path, dialogues: Iterable[tuple[str, list[dict[str, Any]]]], labels: LabelSet
) -> list[Conversation]:
    """Conversations from (id, [ {text, speaker, label}, ... ]) pairs, the DAG-ERC JSON form."""
    out = []
    row = 0
    for conv_id, turns in dialogues:
        built = []
        for turn_id, raw in enumerate(turns):
            row += 1
            if not isinstance(raw, dict):
                raise DataError(f"{path}: row {row}: expected an object with text, speaker, label")
            built.append(make_turn(raw, labels, f"{path}: row {row}", conv_id, turn_id))
        if built:
            out.append(Conversation(conv_id, tuple(built), labels.name))
    return out


def read_dialogue_list(path: Path, labels: LabelSet) -> list[Conversation]:
    """The DAG-ERC form: a JSON list of dialogues (or a map id → dialogue), each a list of turns."""
    data = read_json(path)
    if isinstance(data, dict):
        pairs = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        pairs = [(str(i), v) for i, v in enumerate(data)]
    else:
        raise DataError(f"{path}: expected a list of dialogues")
    for conv_id, turns in pairs:
        if not isinstance(turns, list):
            raise DataError(f"{path}: dialogue {conv_id} is not a list of turns")
    return dialogues_from_lists(path, pairs, labels)
