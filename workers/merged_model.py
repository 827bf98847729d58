"""A base model with a LoRA adapter merged into its weights, built once into the model cache.

vLLM's CPU build applies LoRA with slow fallback kernels; merged, the adapter costs nothing at
serving time. The folder is keyed by the hashes of both the base model's and the adapter's files,
so a retrained adapter or another base gets its own folder and a stale one is never served.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from workers.model_store import build_model_folder, home

_HASHED = ("*.safetensors", "*.bin", "config.json", "adapter_config.json")


def merged_model_dir(base_dir: str | Path, adapter_dir: str | Path) -> Path:
    """The merged model's folder under the model cache, merging it first if needed."""
    key = _files_hash(Path(base_dir), Path(adapter_dir))
    target = home() / "models" / f"merged-{Path(base_dir).name}-{key}"
    if (target / "config.json").is_file():
        return target
    started = time.perf_counter()
    print(f"dialoguellm: merging adapter {adapter_dir} into {base_dir} (once, into {target})...",
          file=sys.stderr, flush=True)
    _merge(Path(base_dir), Path(adapter_dir), target)
    print(f"dialoguellm: merged model ready in {time.perf_counter() - started:.0f} s.", file=sys.stderr, flush=True)
    return target


def _files_hash(*folders: Path) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for pattern in _HASHED:
            for path in sorted(folder.glob(pattern)):
                digest.update(path.name.encode())
                with path.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
    return digest.hexdigest()[:16]


def _merge(base_dir: Path, adapter_dir: Path, target: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def write(tmp: Path) -> None:
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().save_pretrained(tmp)
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp)

    build_model_folder(target, write, ".merge-")
