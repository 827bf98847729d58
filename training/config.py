"""Typed training configuration, read from YAML and validated before any model loads.

Every error names the field, such as `lora.r: must be > 0`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

KNOWN_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    def validate(self, where: str) -> None:
        if self.r <= 0:
            raise ConfigError(f"{where}.r: must be > 0, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"{where}.alpha: must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}.dropout: must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ConfigError(f"{where}.target_modules: must name at least one module")
        for module in self.target_modules:
            if module not in KNOWN_TARGET_MODULES:
                raise ConfigError(f"{where}.target_modules: unknown module {module!r} "
                                  f"(known: {', '.join(KNOWN_TARGET_MODULES)})")


@dataclass(frozen=True)
class DataSource:
    """One dataset split; `limit` takes its first N labelled turns (a bounded run)."""

    dataset: str
    split: str = "train"
    path: str | None = None
    limit: int | None = None

    def validate(self, where: str) -> None:
        from pipeline.datasets import DATASETS, SPLITS, resolve_data_root

        if self.dataset not in DATASETS:
            raise ConfigError(f"{where}.dataset: unknown dataset {self.dataset!r} (known: {', '.join(DATASETS)})")
        if self.split not in SPLITS:
            raise ConfigError(f"{where}.split: unknown split {self.split!r}")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"{where}.limit: must be > 0, got {self.limit}")
        if self.path is not None and not Path(self.path).expanduser().exists():
            raise ConfigError(f"{where}.path: {self.path} does not exist")
        try:
            DATASETS[self.dataset].locate(self.split, resolve_data_root(self.path))
        except Exception as e:  # noqa: BLE001 - any failure to find the data is this field's fault
            raise ConfigError(f"{where}: {e}") from None


@dataclass(frozen=True)
class Optimisation:
    learning_rate: float = 3e-4
    epochs: int = 1
    batch_size: int = 8
    gradient_accumulation: int = 1
    cutoff_len: int = 256
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    seed: int = 0

    def validate(self, where: str) -> None:
        for name in ("epochs", "batch_size", "gradient_accumulation", "cutoff_len"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{where}.{name}: must be > 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"{where}.learning_rate: must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{where}.warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")


@dataclass(frozen=True)
class Scaling:
    """Ray Train's scaling: `num_workers: 0` runs the training function in the driver process."""

    num_workers: int = 0
    use_gpu: bool = False
    accelerator_type: str | None = None
    resources_per_worker: dict[str, float] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        if self.num_workers < 0:
            raise ConfigError(f"{where}.num_workers: must be ≥ 0, got {self.num_workers}")
        if self.accelerator_type and not self.use_gpu:
            raise ConfigError(f"{where}.accelerator_type: needs use_gpu: true")
        for key, value in self.resources_per_worker.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{where}.resources_per_worker.{key}: must be a number ≥ 0")
        if self.use_gpu:
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(f"{where}.use_gpu: true, but no GPU is visible on this machine")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run: model, LoRA, data, optimisation, scaling and where results go."""

    model: str | None = None
    output_dir: str = "runs/adapter"
    context_turns: int = 2
    lora: LoraSettings = LoraSettings()
    train: tuple[DataSource, ...] = (DataSource("meld", "train"),)
    dev: tuple[DataSource, ...] = (DataSource("meld", "dev"),)
    optim: Optimisation = Optimisation()
    scaling: Scaling = Scaling()

    def validate(self) -> TrainConfig:
        if self.context_turns < 0:
            raise ConfigError(f"context_turns: must be ≥ 0, got {self.context_turns}")
        self.lora.validate("lora")
        if not self.train:
            raise ConfigError("train: needs at least one dataset")
        for i, source in enumerate(self.train):
            source.validate(f"train[{i}]")
        for i, source in enumerate(self.dev):
            source.validate(f"dev[{i}]")
        self.optim.validate("optim")
        self.scaling.validate("scaling")
        if self.model is not None:
            from workers.model_store import resolve_model

            resolve_model(self.model)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, refusing unknown or mistyped fields by name."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where + '.' if where else ''}{unknown[0]}: unknown field "
                          f"(known: {', '.join(fields)})")
    values = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        default = _default(fields[name])
        if name in ("train", "dev"):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{key}: expected a list of datasets")
            values[name] = tuple(_build(DataSource, v, f"{key}[{i}]") for i, v in enumerate(value))
        elif dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, key)
        elif name == "target_modules":
            if isinstance(value, str):
                value = [value]
            values[name] = tuple(value)
        else:
            values[name] = _check_type(value, default, key)
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{where or 'config'}: {e}") from None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _check_type(value: Any, default: Any, key: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    elif isinstance(default, dict) and not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    return value


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """A config from its `to_dict()` form (as Ray passes it to workers), without re-validation."""
    return _build(TrainConfig, raw, "")


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML training config."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config: {path} is not valid YAML ({e})") from None
    return _build(TrainConfig, raw, "").validate()
