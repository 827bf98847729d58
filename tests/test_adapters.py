import json

import pytest

from pipeline.errors import AdapterError
from workers.adapters import check_adapter


def test_a_folder_without_adapter_config_is_not_peft(tmp_path):
    with pytest.raises(AdapterError, match="is not a PEFT adapter"):
        check_adapter("x", tmp_path, 16)


def test_rank_above_the_engine_maximum(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 64}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(AdapterError, match="LoRA rank 64 exceeds the engine's maximum 16"):
        check_adapter("big", tmp_path, 16)


def test_a_real_peft_adapter_is_accepted(tiny_adapter):
    info = check_adapter("tiny", tiny_adapter, 8)
    assert info.rank == 8 and set(info.target_modules) == {"q_proj", "v_proj"}


def test_reserved_and_missing(tmp_path):
    with pytest.raises(AdapterError, match="reserved"):
        check_adapter("base", tmp_path, 8)
    with pytest.raises(AdapterError, match="does not exist"):
        check_adapter("gone", tmp_path / "gone", 8)
