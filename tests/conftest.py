"""Shared fixtures: the data root, a tiny random Llama with LoRA adapters (and a tiny Gemma 3), one vLLM
engine per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pipeline.core.datasets import resolve_data_root  # noqa: E402
from pipeline.core.labels import LABEL_SETS, LabelSet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("DIALOGUELLM_TEST_REDIS", "redis://127.0.0.1:6379/0")

# Labels whose tokens share first tokens under the tiny tokenizer ("Ġam" az/us ed, "Ġgr" ate/ump):
# scoring must then ask for more than the first token to stay exact.
SHARED_PREFIX = LabelSet("test-shared-prefix", ("amazed", "amused", "grateful", "grumpy", "calm"))
LABEL_SETS.setdefault(SHARED_PREFIX.name, SHARED_PREFIX)


@pytest.fixture(scope="session")
def data_root() -> Path:
    return resolve_data_root(None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, data_root) -> Path:
    from tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), data_root / "MELD" / "train_sent_emo.csv")


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory, data_root) -> Path:
    """A tiny random Gemma 3: <bos> first, sliding-window layers whose window prompts outgrow."""
    from tiny_model import build_tiny_gemma3

    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"), data_root / "MELD" / "train_sent_emo.csv")


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory, tiny_model) -> Path:
    from tiny_model import build_lora_adapter

    return build_lora_adapter(tiny_model, tmp_path_factory.mktemp("tiny-lora"), rank=8)


@pytest.fixture(scope="session")
def second_tiny_adapter(tmp_path_factory, tiny_model) -> Path:
    """Another random adapter of the same shape (another seed): two adapters to compare."""
    from tiny_model import build_lora_adapter

    return build_lora_adapter(tiny_model, tmp_path_factory.mktemp("tiny-lora-2"), rank=8, seed=7)


@pytest.fixture(scope="session")
def engine(tiny_model, tiny_adapter):
    """One real vLLM engine (CPU build here) over the tiny model, shared by the whole session."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from workers.engine import EmotionEngine
    from workers.engine_config import EngineConfig

    engine = EmotionEngine(EngineConfig(
        model=str(tiny_model), adapters={"tiny": str(tiny_adapter)}, max_model_len=256,
        max_lora_rank=8, kv_cache_gib=1, max_num_seqs=64,
    ))
    yield engine
    try:
        engine.close()
    except ValueError:
        # An in-process training test (Ray Train with num_workers 0) destroyed torch.distributed's
        # default group, which the engine's groups hang from: they are gone already.
        pass


@pytest.fixture
def run_cli():
    """Run `dialoguellm ARGS...` in a fresh process; returns the CompletedProcess."""
    import subprocess

    def run(*args: str, timeout: float = 600, env: dict | None = None):
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, capture_output=True, text=True,
            timeout=timeout, env={**os.environ, **(env or {})},
        )

    return run


@pytest.fixture
def prefix(r):
    """A fresh Redis key prefix for one test; its keys are deleted afterwards."""
    import uuid

    from pipeline.stream.client import delete_keys

    name = f"test:{uuid.uuid4().hex[:10]}"
    yield name
    delete_keys(r, f"{name}:*")


@pytest.fixture
def r():
    """A client of the real Redis server the tests run against (`$DIALOGUELLM_TEST_REDIS`)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def acl_denials(r, user: str) -> list:
    """The Redis ACL log's entries for `user`: what the server refused it (a test user should have none)."""
    def name(entry) -> str:
        fields = dict(zip(entry[::2], entry[1::2])) if isinstance(entry, list) else entry
        value = fields.get(b"username", fields.get("username", b""))
        return value.decode() if isinstance(value, bytes) else value

    return [e for e in r.execute_command("ACL", "LOG", "128") if name(e) == user]
