"""Describers, one per file, picked by name."""

from __future__ import annotations

from typing import Any

from pipeline.core.errors import ConfigError

DESCRIBERS = ("cpu", "vlm")


def get_describer(name: str, **options: Any):
    """A describer by name: `cpu` (face and expression cues, offline) or `vlm` (a vision-language
    model through vLLM; `options` go to its config)."""
    if name == "cpu":
        from workers.video.describers.cpu import FaceCuesDescriber

        return FaceCuesDescriber()
    if name == "vlm":
        from workers.video.describers.vlm import VLMConfig, VLMDescriber

        return VLMDescriber(VLMConfig(**options))
    raise ConfigError(f"describer: {name!r} is not one of {', '.join(DESCRIBERS)}")
