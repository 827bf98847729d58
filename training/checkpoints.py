"""Step checkpoints that a run resumes from exactly: adapter, optimiser, scheduler, RNG, position.

Written every few minutes into one folder, atomically (a new folder renamed over the old), so a
run killed at any moment leaves the last complete checkpoint. `--resume DIR` rebuilds the same
epoch plan, skips the batches already done and restores every random state: the resumed run
computes the same adapter as one never interrupted.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.pt"
POSITION_FILE = "position.json"


@dataclass(frozen=True)
class Position:
    """Where a run stands: `batch` batches of epoch `epoch` done, `step` optimiser steps in all."""

    epoch: int = 0
    batch: int = 0
    step: int = 0


def save_step_checkpoint(folder: Path, model: Any, optimizer: Any, scheduler: Any, position: Position,
                         config: dict[str, Any]) -> None:
    import torch

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    torch.save({
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python_rng": random.getstate(),
    }, tmp / STATE_FILE)
    (tmp / POSITION_FILE).write_text(json.dumps({**asdict(position), "config": config}, indent=2))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_step_checkpoint(folder: Path, model: Any, optimizer: Any, scheduler: Any) -> Position:
    """Restore everything saved in `folder` into the given objects; returns where to continue."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    raw = _read_position(folder)
    device = next(model.parameters()).device
    set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors"), device=str(device)))
    state = torch.load(folder / STATE_FILE, map_location=device, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])
    return Position(raw["epoch"], raw["batch"], raw["step"])


# What a resumed run may change: how often it checkpoints, not what it learns.
_MAY_CHANGE_ON_RESUME = frozenset({"optim.checkpoint_every_s", "optim.checkpoint_every_steps"})


def check_resume(folder: Path | str, config: dict[str, Any]) -> None:
    """Refuse, before anything starts, to resume `folder` under another config than the one that
    wrote it (a forgotten `--set`): the run would go on with another plan than its first part."""
    from pipeline.core.errors import ConfigError

    written = _read_position(Path(folder)).get("config") or {}
    then, now = _flat(written), _flat(json.loads(json.dumps(config)))
    changed = sorted(k for k in then.keys() & now.keys() if then[k] != now[k] and k not in _MAY_CHANGE_ON_RESUME)
    if changed:
        key = changed[0]
        raise ConfigError(f"resume: {folder} was written with {key}={then[key]!r}, this config has "
                          f"{key}={now[key]!r}{f' (and {len(changed) - 1} more)' if len(changed) > 1 else ''}: "
                          "resume with the config and --set it started with")


def _flat(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _read_position(folder: Path) -> dict[str, Any]:
    from pipeline.core.errors import ConfigError

    if not (folder / POSITION_FILE).is_file():
        raise ConfigError(f"resume: {folder} is not a step checkpoint (no {POSITION_FILE})")
    return json.loads((folder / POSITION_FILE).read_text())
