"""Decoding modes: how the engine turns model outputs into per-label probabilities, picked by name."""

from __future__ import annotations

from workers.decoding.base import DecodingMode, ScoringItem
from workers.decoding.choice import ChoiceDecoding
from workers.decoding.scoring import LabelScoring

MODES: dict[str, type[DecodingMode]] = {m.name: m for m in (LabelScoring, ChoiceDecoding)}


def get_decoding_mode(name: str) -> DecodingMode:
    return MODES[name]()


__all__ = ["MODES", "DecodingMode", "ScoringItem", "get_decoding_mode"]
