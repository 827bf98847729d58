"""Dataset loaders: each turns one on-disk format into `Conversation`s with a declared label set."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.datasets.base import DatasetSpec, resolve_data_root
from pipeline.core.datasets.dailydialog import DAILYDIALOG
from pipeline.core.datasets.emorynlp import EMORYNLP
from pipeline.core.datasets.iemocap import IEMOCAP
from pipeline.core.datasets.jsonl import JSONL
from pipeline.core.datasets.meld import MELD
from pipeline.core.errors import DataError
from pipeline.core.turns import Conversation

DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (MELD, EMORYNLP, DAILYDIALOG, IEMOCAP, JSONL)}
SPLITS = ("train", "dev", "test")


def load_dataset(
    name: str, split: str, data: str | Path | None = None, label_set: str | None = None
) -> list[Conversation]:
    """Load `split` of dataset `name`; `data` is a data root, a dataset folder or a file."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    spec = DATASETS[name]
    path = spec.locate(split, resolve_data_root(data))
    return spec.load(path, label_set)


FILE_FORMATS = {".csv": MELD, ".jsonl": JSONL}


def load_file(path: str | Path, label_set: str | None = None) -> list[Conversation]:
    """Conversations from one file: MELD's CSV layout (`.csv`) or the JSON Lines format (`.jsonl`)."""
    path = Path(path)
    spec = FILE_FORMATS.get(path.suffix.lower())
    if spec is None:
        raise DataError(f"{path}: unknown file type (known: {', '.join(FILE_FORMATS)})")
    return spec.load(path, label_set)


__all__ = ["DATASETS", "FILE_FORMATS", "SPLITS", "load_dataset", "load_file", "resolve_data_root"]
