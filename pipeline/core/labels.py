"""Label sets: each dataset declares the emotions its turns may carry."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.errors import DataError

NEUTRAL = "neutral"  # every label set's "no emotion" label (metrics without neutral leave it out)


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of emotion labels, with aliases that raw data may use for them."""

    name: str
    labels: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels) or not self.labels:
            raise ValueError(f"label set {self.name!r} needs distinct, non-empty labels")

    def __contains__(self, label: object) -> bool:
        return label in self.labels

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        return self.labels.index(label)

    def normalize(self, raw: str, where: str = "") -> str:
        """Map a raw label (any case, or an alias) to its canonical form, or raise naming `where`."""
        key = raw.strip().lower()
        key = self.aliases.get(key, key)
        if key not in self.labels:
            place = f"{where}: " if where else ""
            raise DataError(
                f"{place}label {raw!r} is not in the {self.name} label set ({', '.join(self.labels)})"
            )
        return key


LABEL_SETS: dict[str, LabelSet] = {
    s.name: s
    for s in (
        LabelSet("meld", ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")),
        LabelSet(
            "emorynlp", ("neutral", "joyful", "peaceful", "powerful", "scared", "mad", "sad")
        ),
        LabelSet(
            "dailydialog",
            ("neutral", "happiness", "surprise", "sadness", "anger", "fear", "disgust"),
            aliases={"none": "neutral", "no emotion": "neutral"},
        ),
        LabelSet(
            "iemocap",
            ("neutral", "frustrated", "angry", "sad", "happy", "excited"),
            aliases={"neu": "neutral", "fru": "frustrated", "ang": "angry", "hap": "happy",
                     "exc": "excited"},
        ),
    )
}


NEGATIVE_EMOTIONS = frozenset({"anger", "angry", "mad", "frustrated", "disgust", "fear", "scared", "sadness", "sad"})
"""The emotions a supervisor acts on, named once: a label set's negative labels are its labels in this set."""

NEGATIVE_LABELS: dict[str, tuple[str, ...]] = {
    name: tuple(label for label in s.labels if label in NEGATIVE_EMOTIONS) for name, s in LABEL_SETS.items()
}
"""Per label set, its negative labels (MELD: anger, sadness, disgust, fear; EmoryNLP: scared, mad, sad)."""


def negative_labels(label_set: LabelSet) -> tuple[str, ...]:
    """The negative labels of `label_set` (also for a set registered after this module loaded)."""
    return tuple(label for label in label_set.labels if label in NEGATIVE_EMOTIONS)


def get_label_set(name: str) -> LabelSet:
    """The registered label set called `name`."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise DataError(
            f"unknown label set {name!r} (known: {', '.join(sorted(LABEL_SETS))})"
        ) from None
