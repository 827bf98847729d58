"""Average LoRA adapters of one recipe (trained with other seeds) into one adapter.

Each member learns its update in a low-rank subspace of its own, so their A and B matrices cannot
be averaged; their products can. The mean update ΔW = (1/n) Σ s_i B_i A_i is itself a LoRA adapter
of rank Σ r_i (A stacks the members' s_i A_i / n, B sets their B_i side by side, at scaling 1), so
the average is exact, and served merged (the default on a CPU) it costs what one member costs.
With `rank`, each module's mean update is cut to its best approximation of that rank (its top
singular directions), for engines that serve it through LoRA with a bounded rank.

The members' temperatures and decision weights were fitted to each member alone, so the average
has none: `dialoguellm calibrate` fits its own.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.errors import AdapterError

RECORD_FILE = "dialoguellm_average.json"
_WEIGHTS = "adapter_model.safetensors"
_SAME_CONFIG = ("peft_type", "target_modules", "layers_to_transform", "layers_pattern", "bias", "fan_in_fan_out",
                "modules_to_save", "task_type")
"""adapter_config.json fields every member must share: the same modules of the same base."""


def average_adapters(members: Sequence[tuple[str, str | Path]], out: str | Path, rank: int | None = None,
                     progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the mean of `members` (name, folder) as a LoRA adapter folder `out`; its record (also
    written to `out/dialoguellm_average.json`): the members, the rank, and per module how much of
    the mean update a `rank` cut left out (relative Frobenius norm)."""
    import torch
    from safetensors.torch import load_file, save_file

    from workers.adapters import adapter_digest, read_adapter_meta, write_adapter_meta

    configs = [_lora_config(name, Path(path)) for name, path in members]
    metas = [read_adapter_meta(path) for _, path in members]
    _check_same(members, configs, metas)
    tensors = [load_file(str(Path(path) / _WEIGHTS)) for _, path in members]
    keys = set(tensors[0])
    for (name, _), t in zip(members[1:], tensors[1:], strict=True):
        if set(t) != keys:
            raise AdapterError(f"average: {name!r} adapts other modules than {members[0][0]!r}")
    modules = sorted(k.removesuffix(".lora_A.weight") for k in keys if k.endswith(".lora_A.weight"))
    n, total = len(members), sum(c["r"] for c in configs)
    averaged: dict[str, torch.Tensor] = {}
    left_out: dict[str, float] = {}
    for i, module in enumerate(modules, 1):
        a = torch.cat([t[f"{module}.lora_A.weight"].double() * _scaling(c) / n for t, c in zip(tensors, configs)])
        b = torch.cat([t[f"{module}.lora_B.weight"].double() for t in tensors], dim=1)
        if rank is not None and rank < total:
            b, a, left_out[module] = _truncate(b, a, rank)
        averaged[f"{module}.lora_A.weight"] = a.to(tensors[0][f"{module}.lora_A.weight"].dtype).contiguous()
        averaged[f"{module}.lora_B.weight"] = b.to(tensors[0][f"{module}.lora_B.weight"].dtype).contiguous()
        if i % 50 == 0 or i == len(modules):
            progress(f"average: {i}/{len(modules)} modules")
    new_rank = min(rank or total, total)

    target = Path(out)
    target.mkdir(parents=True)  # never into an existing folder: the average is a new adapter
    config = {**configs[0], "r": new_rank, "lora_alpha": new_rank, "use_rslora": False,
              "rank_pattern": {}, "alpha_pattern": {}}
    (target / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(averaged, str(target / _WEIGHTS), metadata={"format": "pt"})
    write_adapter_meta(target, dataclasses.replace(metas[0], temperatures={}, decision_weights={}))
    record = {"members": [{"name": name, "path": str(Path(path).resolve()), "digest": adapter_digest(path)}
                          for name, path in members],
              "rank": new_rank, "exact": not left_out,
              "largest_left_out": max(left_out.values(), default=0.0), "left_out": left_out}
    (target / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _lora_config(name: str, folder: Path) -> dict[str, Any]:
    from workers.adapters import check_adapter

    check_adapter(name, folder, None)  # a LoRA adapter folder, as an engine would take it
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if not (folder / _WEIGHTS).is_file():
        raise AdapterError(f"average: {name!r}: {folder} has no {_WEIGHTS} (an adapter_model.bin is not read)")
    if config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        # DoRA rescales each column after the update, so its updates do not add; per-module ranks would
        # need per-module configs in the output.
        raise AdapterError(f"average: {name!r} uses DoRA or per-module ranks, which this average does not cover")
    return config


def _scaling(config: dict[str, Any]) -> float:
    """The factor PEFT applies to B A (rank-stabilised LoRA divides by √r instead of r)."""
    r = config["r"]
    return config["lora_alpha"] / (r ** 0.5 if config.get("use_rslora") else r)


def _check_same(members: Sequence[tuple[str, Any]], configs: list[dict], metas: list[Any]) -> None:
    first = members[0][0]
    for (name, _), config, meta in zip(members[1:], configs[1:], metas[1:], strict=True):
        for key in _SAME_CONFIG:
            if _as_set(config.get(key)) != _as_set(configs[0].get(key)):
                raise AdapterError(f"average: {name!r} differs from {first!r} in adapter_config {key} "
                                   f"({config.get(key)!r} against {configs[0].get(key)!r})")
        for key in ("prompt", "context_turns", "window_step", "max_model_len", "class_weights"):
            # What serving applies before the decision: the members must have been trained alike.
            if getattr(meta, key) != getattr(metas[0], key):
                raise AdapterError(f"average: {name!r} was trained with another {key} than {first!r} "
                                   f"({getattr(meta, key)!r} against {getattr(metas[0], key)!r})")


def _as_set(value: Any) -> Any:
    """Lists in adapter_config.json (module names, layer numbers) compare without their order."""
    return frozenset(value) if isinstance(value, list) else value


def _truncate(b: Any, a: Any, rank: int) -> tuple[Any, Any, float]:
    """The best rank-`rank` factors of B A (Eckart-Young), from QR of the thin factors (never the full
    matrix), and the relative Frobenius norm of what is left out."""
    import torch

    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    root = s[:rank].sqrt()
    kept_b = (qb @ u[:, :rank]) * root
    kept_a = root[:, None] * (vh[:rank] @ qa.T)
    total = float(s.square().sum())
    return kept_b, kept_a, (float(s[rank:].square().sum()) / total) ** 0.5 if total else 0.0
