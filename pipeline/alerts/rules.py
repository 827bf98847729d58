"""Escalation rules: which labels make a turn "upset", for whom, for how long. Read from YAML, checked once.

    rules:
      - name: customer-upset
        labels: [anger, disgust, sadness]   # a turn's score: the sum of these labels' probabilities
        threshold: 0.6
        turns: 3                            # consecutive matching turns at or above the threshold open an episode
        speaker: "(?i)^customer$"           # optional regex on the speaker (default: every speaker)
        clear_after: 2                      # consecutive matching turns below the threshold close it

A mistake fails at start with the field at fault: `rules[0].threshold: must be in (0, 1], got 1.5`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.labels import LABEL_SETS

KNOWN_LABELS = frozenset(label for s in LABEL_SETS.values() for label in s.labels)
_FIELDS = ("name", "labels", "threshold", "turns", "speaker", "clear_after")


@dataclass(frozen=True)
class Rule:
    """One escalation rule; `score` and `matches` are all the episode logic needs to know of a turn."""

    name: str
    labels: tuple[str, ...]
    threshold: float
    turns: int = 3
    speaker: str | None = None
    clear_after: int = 2
    _speaker_re: re.Pattern | None = field(default=None, repr=False, compare=False)

    def score(self, probs: Mapping[str, float]) -> float:
        """The turn's score: the summed probability of the rule's labels (absent labels count 0)."""
        return float(sum(probs.get(label, 0.0) for label in self.labels))

    def matches(self, speaker: str) -> bool:
        return self._speaker_re is None or self._speaker_re.search(speaker) is not None


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """The rules of a YAML file, each field checked; a `ConfigError` names the one at fault."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"rules: file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"rules: {path} is not valid YAML ({e})") from None
    return parse_rules(raw)


def parse_rules(raw: Any) -> tuple[Rule, ...]:
    """The rules of a parsed YAML document (`{"rules": [...]}`)."""
    if not isinstance(raw, dict) or "rules" not in raw:
        raise ConfigError("rules: the file must hold a mapping with a `rules:` list")
    unknown = set(raw) - {"rules"}
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown key (expected only `rules`)")
    items = raw["rules"]
    if not isinstance(items, list) or not items:
        raise ConfigError("rules: must be a non-empty list")
    rules = tuple(_rule(item, f"rules[{i}]") for i, item in enumerate(items))
    names = [r.name for r in rules]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"rules[{i}].name: {name!r} is used by an earlier rule; names must be unique")
    return rules


def _rule(item: Any, where: str) -> Rule:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: must be a mapping with {', '.join(_FIELDS)}")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(_FIELDS)})")
    for required in ("name", "labels", "threshold"):
        if required not in item:
            raise ConfigError(f"{where}.{required}: missing")
    name = item["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{where}.name: must be a non-empty string of letters, digits, '_', '.', '-', "
                          f"got {name!r}")
    labels = item["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ConfigError(f"{where}.labels: must be a non-empty list of label names, got {labels!r}")
    for label in labels:
        if label not in KNOWN_LABELS:
            raise ConfigError(f"{where}.labels: {label!r} is in no label set (known: {', '.join(sorted(KNOWN_LABELS))})")
    threshold = item["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ConfigError(f"{where}.threshold: must be in (0, 1], got {threshold!r}")
    counts = {k: item.get(k, default) for k, default in (("turns", 3), ("clear_after", 2))}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}.{key}: must be an integer ≥ 1, got {value!r}")
    speaker = item.get("speaker")
    pattern = None
    if speaker is not None:
        if not isinstance(speaker, str):
            raise ConfigError(f"{where}.speaker: must be a regular expression string, got {speaker!r}")
        try:
            pattern = re.compile(speaker)
        except re.error as e:
            raise ConfigError(f"{where}.speaker: {speaker!r} is not a valid regular expression ({e})") from None
    return Rule(name, tuple(dict.fromkeys(labels)), float(threshold), counts["turns"], speaker,
                counts["clear_after"], pattern)
