"""How a config dataclass field carries its help text: `field(default=..., metadata=field_help("..."))`.

`pipeline.cli.flags` reads it back as the flag's help; configs, flags and docs keep one wording.
"""

from __future__ import annotations


def field_help(text: str) -> dict[str, str]:
    """The `metadata` of a documented config field."""
    return {"help": text}
