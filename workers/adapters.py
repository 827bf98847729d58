"""LoRA adapter folders: checked at start so a bad one fails before the engine loads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import AdapterError

BASE_MODEL = "base"
"""The reserved adapter name that asks for the base model without any adapter."""


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: str
    rank: int
    target_modules: tuple[str, ...]


def check_adapter(name: str, path: str | Path, max_rank: int) -> AdapterInfo:
    """Read a PEFT adapter folder's config; raise `AdapterError` if it cannot be served."""
    if name == BASE_MODEL:
        raise AdapterError(f"adapter name {BASE_MODEL!r} is reserved for the base model")
    folder = Path(path).expanduser()
    config_file = folder / "adapter_config.json"
    if not folder.is_dir():
        raise AdapterError(f"adapter {name!r}: folder {folder} does not exist")
    if not config_file.is_file():
        raise AdapterError(f"adapter {name!r}: {folder} is not a PEFT adapter (no adapter_config.json)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdapterError(f"adapter {name!r}: {config_file} is not readable JSON ({e})") from None
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"adapter {name!r}: {folder} is a {config.get('peft_type')!r} adapter, not LoRA")
    if not any((folder / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise AdapterError(f"adapter {name!r}: {folder} has no adapter_model.safetensors")
    rank = int(config.get("r", 0))
    if rank > max_rank:
        raise AdapterError(
            f"adapter {name!r}: LoRA rank {rank} exceeds the engine's maximum {max_rank} "
            "(raise max_lora_rank)"
        )
    modules = config.get("target_modules") or ()
    if isinstance(modules, str):
        modules = (modules,)
    return AdapterInfo(name, str(folder.resolve()), rank, tuple(modules))
