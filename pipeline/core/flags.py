"""Flags generated from a command's config dataclass, and the config built back from them.

One source of defaults, as vLLM's `EngineArgs.add_cli_args`: every field documented with
`field_help` becomes a flag whose type comes from its type hint, its default from the field (or
from the composite's own default for a sub-config), its choices from the registry the field names
and its help from the field. A field whose type is a config dataclass is a group of flags.
`config_from_args` takes exactly those fields back; nothing else reads the argparse namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterator
from typing import Any

from pipeline.core.config_fields import field_default

_SCALARS = (int, float, str)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _sub_config(hint: Any) -> type | None:
    inner, _ = _unwrap(hint)
    return inner if isinstance(inner, type) and dataclasses.is_dataclass(inner) else None


def _documented(cls: type) -> Iterator[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _sub_config(hints[f.name]) is not None or "help" in f.metadata:
            yield f, hints[f.name]


def _flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, cls: type, *, _prefix: str = "", _base: Any = None,
                     _group: Any = None) -> None:
    """Declare a flag for every documented field of `cls`, a group for every sub-config."""
    target = _group or parser
    for f, hint in _documented(cls):
        dest = _prefix + f.name
        sub = _sub_config(hint)
        if sub is not None:
            base = getattr(_base, f.name, None) if _base is not None else field_default(f)
            title = (sub.__doc__ or f.name).strip().splitlines()[0].rstrip(".:")
            group = parser.add_argument_group(f"{f.name}: {title}")
            add_config_flags(parser, sub, _prefix=dest + ".", _base=base, _group=group)
            continue
        default = _flag_default(f, _base)
        _add(target, f, hint, dest, default)


def _flag_default(f: dataclasses.Field, base: Any) -> Any:
    """The field's plain default, or the composite's value for it; None for a computed default."""
    if f.default is dataclasses.MISSING:
        return None
    return getattr(base, f.name) if base is not None else f.default


def _add(group: Any, f: dataclasses.Field, hint: Any, dest: str, default: Any) -> None:
    meta = f.metadata
    kind, optional = _unwrap(hint)
    text = meta["help"]
    options: dict[str, Any] = {"help": text}
    choices = meta.get("choices")
    if callable(choices):
        choices = choices()
    if choices is not None:
        options["choices"] = list(choices)
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    if meta.get("positional"):
        if typing.get_origin(kind) in (list, tuple):
            options["nargs"] = "+"
        group.add_argument(dest, metavar=meta.get("metavar", f.name), type=kind if kind in _SCALARS else str,
                           **options)
        return
    flag = _flag_name(f)
    if kind is bool:
        on = not default
        flag = meta.get("flag") or (flag if on else "--no-" + f.name.replace("_", "-"))
        group.add_argument(flag, dest=dest, action="store_true" if on else "store_false", default=default,
                           help=text)
        return
    if "parse" in meta or typing.get_origin(kind) in (list, tuple, dict):
        options.update(action="append", type=str, metavar=meta.get("metavar", f.name.upper()))
        group.add_argument(flag, dest=dest, default=None, **options)
        return
    if kind not in _SCALARS:
        raise TypeError(f"{f.name}: no flag for type {hint!r}")
    if default is not None and "default:" not in text:
        options["help"] = text + " (default: %(default)s)"
    if "const" in meta:
        options.update(nargs="?", const=meta["const"])
    metavar = meta.get("metavar", None if choices is not None else f.name.upper())
    group.add_argument(flag, dest=dest, type=kind, default=default, required=required and not optional,
                       metavar=metavar, **options)


def config_from_args(cls: type, args: argparse.Namespace, _prefix: str = "") -> Any:
    """The `cls` the parsed flags describe (its `__post_init__` checks it, naming a bad field)."""
    given: dict[str, Any] = {}
    for f, hint in _documented(cls):
        dest = _prefix + f.name
        sub = _sub_config(hint)
        if sub is not None:
            given[f.name] = config_from_args(sub, args, dest + ".")
            continue
        value = getattr(args, dest)
        if value is None:
            continue  # the field's own default (or factory) applies
        if "parse" in f.metadata:
            value = f.metadata["parse"](value)
        elif typing.get_origin(_unwrap(hint)[0]) in (list, tuple):
            value = typing.get_origin(_unwrap(hint)[0])(value)
        given[f.name] = value
    return cls(**given)
