"""Typed training configuration, read from YAML and validated before any model loads.

Every error names the field, such as `lora.r: must be > 0`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.config_fields import field_default, field_help
from pipeline.core.decision import check_objectives
from pipeline.core.errors import ConfigError

DECISION_RULES = ("argmax", "fitted")
KNOWN_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")


@dataclass(frozen=True)
class LoraSettings:
    r: int = field(default=8, metadata=field_help("LoRA rank"))
    alpha: int = field(default=16, metadata=field_help("LoRA scaling numerator (scale = alpha / r)"))
    dropout: float = field(default=0.05, metadata=field_help("dropout on the LoRA input, in [0, 1)"))
    target_modules: tuple[str, ...] = field(default=("q_proj", "v_proj"),
                                            metadata=field_help("projections that get LoRA, of " + ", ".join(KNOWN_TARGET_MODULES)))
    top_layers: int | None = field(default=None, metadata=field_help(
        "LoRA on the top K decoder layers only; with the fast step the frozen layers below are computed "
        "once per example and reused every epoch (None: every layer)"))

    def validate(self, where: str) -> None:
        if self.r <= 0:
            raise ConfigError(f"{where}.r: must be > 0, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"{where}.alpha: must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}.dropout: must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ConfigError(f"{where}.target_modules: must name at least one module")
        if self.top_layers is not None and self.top_layers <= 0:
            raise ConfigError(f"{where}.top_layers: must be > 0, got {self.top_layers}")
        for module in self.target_modules:
            if module not in KNOWN_TARGET_MODULES:
                raise ConfigError(f"{where}.target_modules: unknown module {module!r} "
                                  f"(known: {', '.join(KNOWN_TARGET_MODULES)})")


@dataclass(frozen=True)
class DataSource:
    """One dataset split; `limit` takes its first N labelled turns (a bounded run); `weight` is how
    many times an epoch sees each of its conversations on average (a repeat factor: 3 repeats them
    three times, 0.5 takes half of them, 2.5 twice each plus a seeded half once more)."""

    dataset: str = field(metadata=field_help("dataset name (meld, emorynlp, iemocap, dailydialog, jsonl)"))
    split: str = field(default="train", metadata=field_help("train, dev or test"))
    path: str | None = field(default=None, metadata=field_help(
        "data root, dataset folder or file (default: the data root)"))
    limit: int | None = field(default=None, metadata=field_help("take the first N labelled turns only"))
    label_set: str | None = field(default=None, metadata=field_help(
        "the label set of a jsonl dataset (default: the one in the folder's manifest.json, as `corrections "
        "export` writes it, else meld)"))
    weight: float = field(default=1.0, metadata=field_help(
        "train sources: sampling weight, the times an epoch sees each conversation on average (> 0)"))

    def validate(self, where: str) -> None:
        from pipeline.core.datasets import DATASETS, SPLITS, resolve_data_root
        from pipeline.core.labels import LABEL_SETS

        if self.dataset not in DATASETS:
            raise ConfigError(f"{where}.dataset: unknown dataset {self.dataset!r} (known: {', '.join(DATASETS)})")
        if self.split not in SPLITS:
            raise ConfigError(f"{where}.split: unknown split {self.split!r}")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"{where}.limit: must be > 0, got {self.limit}")
        if not self.weight > 0:
            raise ConfigError(f"{where}.weight: must be > 0, got {self.weight}")
        if self.label_set is not None and self.label_set not in LABEL_SETS:
            raise ConfigError(f"{where}.label_set: unknown label set {self.label_set!r} "
                              f"(known: {', '.join(LABEL_SETS)})")
        if self.path is not None and not Path(self.path).expanduser().exists():
            raise ConfigError(f"{where}.path: {self.path} does not exist")
        try:
            DATASETS[self.dataset].locate(self.split, resolve_data_root(self.path))
        except Exception as e:  # noqa: BLE001 - any failure to find the data is this field's fault
            raise ConfigError(f"{where}: {e}") from None

    def resolved_label_set(self) -> str | None:
        """The label set to read a jsonl source with: its own, else its export's manifest, else None."""
        if self.label_set is not None or self.dataset != "jsonl" or self.path is None:
            return self.label_set
        from pipeline.core.corrections import export_label_set

        return export_label_set(Path(self.path).expanduser())


@dataclass(frozen=True)
class Optimisation:
    learning_rate: float = field(default=3e-4, metadata=field_help("AdamW peak learning rate"))
    epochs: int = field(default=1, metadata=field_help("passes over the training data"))
    batch_size: int = field(default=8, metadata=field_help("examples per forward pass (one label set per batch)"))
    gradient_accumulation: int = field(default=1, metadata=field_help("batches per optimiser step"))
    warmup_ratio: float = field(default=0.03, metadata=field_help("share of steps with a linear warm-up"))
    weight_decay: float = field(default=0.0, metadata=field_help("AdamW weight decay"))
    seed: int = field(default=0, metadata=field_help("seed of the shuffling, dropout and LoRA initialisation"))
    step: str = field(default="fast", metadata=field_help(
        "fast: shared instruction prefix once per batch, LM head at the loss positions only (Llama-style "
        "models); plain: every position of every padded row (any architecture), the same loss"))
    checkpoint_every_s: float = field(default=300.0, metadata=field_help(
        "seconds between step checkpoints (adapter, optimiser, scheduler, RNG, position) that --resume continues"))
    checkpoint_every_steps: int | None = field(default=None, metadata=field_help(
        "also checkpoint every N optimiser steps (None: by time only)"))

    def validate(self, where: str) -> None:
        from training.steps import STEP_KINDS

        if self.step not in STEP_KINDS:
            raise ConfigError(f"{where}.step: {self.step!r} is not one of {', '.join(STEP_KINDS)}")
        if self.checkpoint_every_s <= 0:
            raise ConfigError(f"{where}.checkpoint_every_s: must be > 0, got {self.checkpoint_every_s}")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps <= 0:
            raise ConfigError(f"{where}.checkpoint_every_steps: must be > 0, got {self.checkpoint_every_steps}")
        for name in ("epochs", "batch_size", "gradient_accumulation"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{where}.{name}: must be > 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"{where}.learning_rate: must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{where}.warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")


@dataclass(frozen=True)
class Scaling:
    """Ray Train's scaling: `num_workers: 0` runs the training function in the driver process."""

    num_workers: int = field(default=0, metadata=field_help("Ray Train workers; 0 runs in the driver process"))
    use_gpu: bool = field(default=False, metadata=field_help("one GPU per worker, bf16"))
    accelerator_type: str | None = field(default=None, metadata=field_help("Ray accelerator type, such as A100"))
    resources_per_worker: dict[str, float] = field(default_factory=dict, metadata=field_help(
        "Ray resources per worker"))

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

    model: str | None = field(default=None, metadata=field_help(
        "model folder, hub id, or a named offline model: default (or None: SmolLM2-135M-Instruct) or "
        "gemma-3-270m (an optional install)"))
    output_dir: str = field(default="runs/adapter", metadata=field_help("where the best adapter is written"))
    prompt: str = field(default="dialoguellm", metadata=field_help(
        "dialoguellm: the paper's prompt; conversation: every turn up to the target, each a line and a slot, "
        "trained in one pass per conversation (optim.step fast), as served"))
    context_turns: int = field(default=2, metadata=field_help(
        "previous turns in the prompt, as served (conversation prompt: at most this many)"))
    window_step: int = field(default=8, metadata=field_help(
        "conversation prompt: the window of past turns starts at a multiple of this many turn ids, as served"))
    max_model_len: int = field(default=512, metadata=field_help(
        "token budget of prompt + answer, as the engine's max_model_len; recorded with the adapter"))
    objective: str = field(default="label_ce", metadata=field_help(
        "label_ce: cross-entropy over the label set's sequence likelihoods (what scoring serves); "
        "lm: the answer tokens' language-model loss"))
    class_weight_power: float = field(default=0.0, metadata=field_help(
        "label_ce weights each turn by (N / (K n_c)) ** power of its gold class c (train counts per label set): "
        "0 none, 0.5 the square root of inverse frequency, 1 inverse frequency; serving divides the weights "
        "out again, so probabilities stay calibrated"))
    decision_rule: str = field(default="argmax", metadata=field_help(
        "argmax: the most probable label; fitted: argmax of p x w, w fitted on dev per label set for its "
        "decision_objective and stored with the adapter (probabilities unchanged)"))
    decision_objective: dict[str, str] = field(default_factory=dict, metadata=field_help(
        "with decision_rule fitted: what the decision weights maximise, per label set, e.g. {dailydialog: "
        "micro_f1_without_neutral}; a label set not named gets balanced (the mean of weighted-F1, macro-F1 "
        "and negative-F1)"))
    init_adapter: str | None = field(default=None, metadata=field_help(
        "start from this LoRA adapter folder's weights instead of a fresh LoRA (default: the shipped adapter, "
        "training/default_adapter); its rank, alpha, modules and layers must be the lora section's"))
    lora: LoraSettings = LoraSettings()
    train: tuple[DataSource, ...] = (DataSource("meld", "train"),)
    dev: tuple[DataSource, ...] = (DataSource("meld", "dev"),)
    optim: Optimisation = Optimisation()
    scaling: Scaling = Scaling()

    def validate(self) -> TrainConfig:
        from training.objectives import OBJECTIVES

        if self.context_turns < 0:
            raise ConfigError(f"context_turns: must be ≥ 0, got {self.context_turns}")
        if self.max_model_len <= 0:
            raise ConfigError(f"max_model_len: must be > 0, got {self.max_model_len}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective: {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        from pipeline.core.conversation_prompt import PROMPTS

        if self.prompt not in PROMPTS:
            raise ConfigError(f"prompt: {self.prompt!r} is not one of {', '.join(PROMPTS)}")
        if self.window_step <= 0:
            raise ConfigError(f"window_step: must be > 0, got {self.window_step}")
        if self.prompt == "conversation" and self.optim.step == "fast" and self.objective != "label_ce":
            raise ConfigError("objective: the conversation prompt's one-pass step trains label_ce only "
                              "(optim.step: plain for lm)")
        if not 0 <= self.class_weight_power <= 2:
            raise ConfigError(f"class_weight_power: must be in [0, 2], got {self.class_weight_power}")
        if self.class_weight_power and self.objective != "label_ce":
            raise ConfigError("class_weight_power: class weights apply to label_ce only")
        if self.decision_rule not in DECISION_RULES:
            raise ConfigError(f"decision_rule: {self.decision_rule!r} is not one of {', '.join(DECISION_RULES)}")
        check_objectives(self.decision_objective, self.decision_rule == "fitted", "decision_objective", "decision_rule")
        self.lora.validate("lora")
        if not self.train:
            raise ConfigError("train: needs at least one dataset")
        for i, source in enumerate(self.train):
            source.validate(f"train[{i}]")
        for i, source in enumerate(self.dev):
            source.validate(f"dev[{i}]")
            if source.weight != 1.0:
                raise ConfigError(f"dev[{i}].weight: weights apply to train sources only")
        if self.init_adapter is not None:
            check_init_adapter(self)
        self.optim.validate("optim")
        self.scaling.validate("scaling")
        if self.model is not None:
            from workers.model_store import resolve_model

            resolve_model(self.model)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def init_adapter_dir(value: str) -> Path:
    """The folder `init_adapter` names (`default`: the shipped adapter)."""
    if value == "default":
        from workers.model_store import default_adapter_dir

        shipped = default_adapter_dir()
        if shipped is None:
            raise ConfigError("init_adapter: default names the shipped adapter, which this install does not have")
        return Path(shipped)
    return Path(value).expanduser()


def check_init_adapter(config: TrainConfig) -> None:
    """`config.init_adapter` is a PEFT LoRA folder whose shape is the config's `lora` (the same trained
    parameters) and whose recorded prompt settings the config repeats: continuing an adapter on
    prompts laid out otherwise would first unlearn what it knew."""
    import json

    from workers.adapters import read_adapter_meta

    lora = config.lora
    folder = init_adapter_dir(config.init_adapter)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise ConfigError(f"init_adapter: {folder} is not a PEFT adapter folder (no adapter_config.json)")
    try:
        saved = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"init_adapter: {config_file} is not readable JSON ({e})") from None
    if saved.get("peft_type") != "LORA":
        raise ConfigError(f"init_adapter: {folder} is a {saved.get('peft_type')!r} adapter, not LoRA")
    modules = saved.get("target_modules") or ()
    layers = saved.get("layers_to_transform")
    wanted = {"r": (saved.get("r"), lora.r), "alpha": (saved.get("lora_alpha"), lora.alpha),
              "target_modules": (sorted([modules] if isinstance(modules, str) else modules),
                                 sorted(lora.target_modules))}
    for name, (theirs, ours) in wanted.items():
        if theirs != ours:
            raise ConfigError(f"lora.{name}: {ours} differs from init_adapter's {theirs} ({folder})")
    if lora.top_layers is None and layers:
        raise ConfigError(f"lora.top_layers: init_adapter trains layers {min(layers)}-{max(layers)} only; "
                          f"set top_layers: {len(layers)}")
    if lora.top_layers is not None and (not layers or len(layers) != lora.top_layers):
        raise ConfigError(f"lora.top_layers: {lora.top_layers} differs from init_adapter's "
                          f"{len(layers) if layers else 'every layer'} ({folder})")
    meta = read_adapter_meta(folder)
    for name in ("prompt", "context_turns", "window_step", "max_model_len"):
        theirs, ours = getattr(meta, name), getattr(config, name)
        if theirs is not None and theirs != ours:
            raise ConfigError(f"{name}: {ours!r} differs from init_adapter's {theirs!r} ({folder})")


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
        default = field_default(fields[name])
        if default is None and value is not None:
            # An optional field: check against the type its annotation names ("int | None").
            default = {"int": 0, "str": "", "float": 0.0}.get(str(fields[name].type).split(" |")[0])
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


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML training config, apply `overrides` ("optim.epochs=1": a dotted field, a YAML
    value), and validate the result once, so a bad override is refused by its field's name."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config: {path} is not valid YAML ({e})") from None
    for override in overrides:
        _override(raw, override)
    return _build(TrainConfig, raw, "").validate()


def _override(raw: dict[str, Any], override: str) -> None:
    import yaml

    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set: expected FIELD=VALUE (e.g. optim.epochs=1), got {override!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: {text!r} is not a YAML value ({e})") from None
    set_field(raw, key.strip(), value)


def set_field(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set one value of a raw (YAML) config: `optim.epochs`, `train.1.limit` (list items by index);
    a missing mapping on the way is created. Raises ConfigError naming the part that does not fit."""
    *parents, last = dotted.split(".")
    node: Any = raw
    for i, part in enumerate([*parents, last]):
        where = ".".join(parents[:i]) or "config"
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{where}: has no item {part!r} (it holds {len(node)}), so {dotted} cannot be set")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
        else:
            raise ConfigError(f"{where}: is not a mapping, so {dotted} cannot be set")
        if i == len(parents):
            node[index] = value
        else:
            node = node[index] if isinstance(node, list) else node.setdefault(part, {})


@dataclass(frozen=True)
class TrainRunConfig:
    """`dialoguellm train` and `python -m training.train`: one set of flags (`pipeline.core.flags`)."""

    config: str = field(metadata=field_help("YAML training config (see training/configs/)"))
    storage: str | None = field(default=None, metadata=field_help("Ray Train storage path (default: beside output_dir)"))
    resume: str | None = field(default=None, metadata=field_help(
        "continue exactly from a step checkpoint (<storage>/<run>/local-checkpoints/last-step)", metavar="DIR"))
    overwrite: bool = field(default=False, metadata=field_help("replace an output_dir this command did not write"))
    overrides: tuple[str, ...] = field(default=(), metadata=field_help(
        "override one field of the config: a dotted name and a YAML value (repeatable), e.g. --set optim.epochs=1 "
        "--set output_dir=runs/one-epoch/adapter (a resumed run needs the same --set again)", flag="--set", metavar="FIELD=VALUE"))
