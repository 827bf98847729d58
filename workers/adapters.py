"""LoRA adapter folders: checked at start so a bad one fails before the engine loads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.core.errors import AdapterError

BASE_MODEL = "base"
"""The reserved adapter name that asks for the base model without any adapter."""


META_FILE = "dialoguellm_adapter.json"


@dataclass(frozen=True)
class AdapterMeta:
    """What an adapter was trained with that serving must know: the prompt, its context and token
    budget, and per label set: the temperature that calibrates its probabilities (fitted on dev),
    the class weights of a class-weighted loss (`class_weights`: serving divides the model's label
    probabilities by them, which undoes the weighting, before the temperature) and the decision
    weights fitted on dev (`decision_weights`: the label is the argmax of p × w; the probabilities
    served stay the calibrated p)."""

    context_turns: int | None = None
    max_model_len: int | None = None
    temperatures: dict[str, float] = field(default_factory=dict)
    prompt: str | None = None
    window_step: int | None = None
    class_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    decision_weights: dict[str, dict[str, float]] = field(default_factory=dict)


def write_adapter_meta(folder: str | Path, meta: AdapterMeta) -> None:
    (Path(folder) / META_FILE).write_text(json.dumps(asdict(meta), indent=2) + "\n", encoding="utf-8")


def read_adapter_meta(folder: str | Path) -> AdapterMeta:
    """The adapter's recorded settings; an adapter trained elsewhere has none (all unknown)."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        return AdapterMeta()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))

        def per_label(name: str) -> dict[str, dict[str, float]]:
            return {str(s): {str(k): float(v) for k, v in w.items()} for s, w in (raw.get(name) or {}).items()}

        return AdapterMeta(raw.get("context_turns"), raw.get("max_model_len"),
                           {str(k): float(v) for k, v in (raw.get("temperatures") or {}).items()},
                           raw.get("prompt"), raw.get("window_step"),
                           per_label("class_weights"), per_label("decision_weights"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
        raise AdapterError(f"{path}: not a readable adapter description ({e})") from None


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: str
    rank: int
    target_modules: tuple[str, ...]
    meta: AdapterMeta = AdapterMeta()


def check_adapter(name: str, path: str | Path, max_rank: int | None) -> AdapterInfo:
    """Read a PEFT adapter folder's config; raise `AdapterError` if it cannot be served (`max_rank`
    None: by an engine of any LoRA rank)."""
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
    if max_rank is not None and rank > max_rank:
        raise AdapterError(
            f"adapter {name!r}: LoRA rank {rank} exceeds the engine's maximum {max_rank} "
            "(raise max_lora_rank)"
        )
    modules = config.get("target_modules") or ()
    if isinstance(modules, str):
        modules = (modules,)
    return AdapterInfo(name, str(folder.resolve()), rank, tuple(modules), read_adapter_meta(folder))


_DIGESTED = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", META_FILE)


def adapter_digest(path: str | Path) -> str:
    """A hash of the adapter's files (config, weights, recorded settings): a name stands for these."""
    import hashlib

    digest = hashlib.sha256()
    for name in _DIGESTED:
        file = Path(path) / name
        if file.is_file():
            digest.update(name.encode() + b"\0")
            with file.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def check_under_root(name: str, path: str | Path, root: str | Path | None) -> Path:
    """The adapter folder `path` resolved, when it and every file in it (symlinks followed) lie
    under `root`; `AdapterError` otherwise. A path from a message is trusted no further than this."""
    if root is None:
        raise AdapterError(f"adapter {name!r}: no --adapters-root is set, so no adapter may be loaded while running")
    base = Path(root).expanduser().resolve()
    try:
        folder = Path(path).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise AdapterError(f"adapter {name!r}: folder {path} does not exist") from None
    if not folder.is_relative_to(base):
        raise AdapterError(f"adapter {name!r}: {path} is outside --adapters-root {base}")
    for entry in folder.iterdir():
        if not entry.resolve().is_relative_to(base):
            raise AdapterError(f"adapter {name!r}: {entry} links outside --adapters-root {base}")
    return folder


def check_rollout_adapter(name: str, path: str | Path, root: str | Path | None, max_rank: int) -> AdapterInfo:
    """`check_adapter` for a folder a control message names: under `root` first, then a servable LoRA."""
    return check_adapter(name, check_under_root(name, path, root), max_rank)
