"""Frame sampling modes, one per file, picked by name: which decoded frames describe a segment."""

from __future__ import annotations

from workers.video.modes.base import SamplingMode
from workers.video.modes.keyframes import KeyframesMode
from workers.video.modes.uniform import UniformMode

MODES: dict[str, type[SamplingMode]] = {"uniform": UniformMode, "keyframes": KeyframesMode}


def get_sampling_mode(name: str) -> SamplingMode:
    from pipeline.core.errors import ConfigError

    if name not in MODES:
        raise ConfigError(f"sampling: {name!r} is not one of {', '.join(MODES)}")
    return MODES[name]()
