"""EmoryNLP (Zahiri & Choi, 2018): the DAG-ERC dialogue JSON or the original release JSON."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.datasets.base import DatasetSpec, dialogues_from_lists, read_dialogue_list, read_json
from pipeline.core.errors import DataError
from pipeline.core.labels import LabelSet
from pipeline.core.turns import Conversation


def read_emorynlp(path: Path, labels: LabelSet) -> list[Conversation]:
    """Either form, told apart by shape: the release JSON is a map with `episodes`."""
    data = read_json(path)
    if not (isinstance(data, dict) and "episodes" in data):
        return read_dialogue_list(path, labels)
    try:
        scenes = [
            (
                scene["scene_id"],
                [
                    {"text": u["transcript"], "speaker": " ".join(u["speakers"]), "label": u["emotion"]}
                    for u in scene["utterances"]
                ],
            )
            for episode in data["episodes"]
            for scene in episode["scenes"]
        ]
    except (KeyError, TypeError) as e:
        raise DataError(f"{path}: not an EmoryNLP release file (missing {e})") from None
    return dialogues_from_lists(path, scenes, labels)


EMORYNLP = DatasetSpec(
    name="emorynlp",
    label_set="emorynlp",
    folder="EmoryNLP",
    files={"train": "dag-erc-json/train_data.json", "dev": "dag-erc-json/dev_data.json",
           "test": "dag-erc-json/test_data.json"},
    reader=read_emorynlp,
)
