"""How a config dataclass field documents itself: `field(default=..., metadata=field_help("..."))`.

`pipeline.core.flags` turns every documented field into a flag: its type from the type hint, its
default from the field, its help and choices from here. A field without `field_help` is not a
flag (a setting for the Python API and the configs that compose it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import Any


def field_help(text: str, *, flag: str | None = None, choices: Collection[str] | Callable[[], Collection[str]] | None = None,
               positional: bool = False, parse: Callable[[list[str]], Any] | None = None,
               metavar: str | None = None, const: Any = None) -> dict[str, Any]:
    """The `metadata` of a documented config field.

    `flag`: the flag's name when not `--field-name` (a bool defaulting to True gets `--no-...`);
    `choices`: the registry the value must be one of (a callable is read when the parser is
    built, so the registry stays the one source); `positional`: an argument, not a flag;
    `parse`: for a repeatable flag, turns the list of given strings into the field's value;
    `const`: the value of the flag given without one.
    """
    meta: dict[str, Any] = {"help": text}
    for key, value in (("flag", flag), ("choices", choices), ("parse", parse), ("metavar", metavar), ("const", const)):
        if value is not None:
            meta[key] = value
    if positional:
        meta["positional"] = True
    return meta


def field_default(f: dataclasses.Field) -> Any:
    """The value a field takes when not given (its factory called); None when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None
