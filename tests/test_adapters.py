import json

import pytest

from pipeline.core.errors import AdapterError
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


def test_adapter_meta_round_trips_and_a_broken_one_is_named(tmp_path, tiny_adapter):
    import shutil

    from workers.adapters import META_FILE, AdapterMeta, read_adapter_meta, write_adapter_meta

    folder = tmp_path / "a"
    shutil.copytree(tiny_adapter, folder)
    assert check_adapter("a", folder, 8).meta == AdapterMeta()  # trained elsewhere: nothing recorded
    write_adapter_meta(folder, AdapterMeta(3, 384, {"meld": 1.7}))
    assert check_adapter("a", folder, 8).meta == AdapterMeta(3, 384, {"meld": 1.7})
    (folder / META_FILE).write_text("{not json")
    with pytest.raises(AdapterError, match=META_FILE):
        read_adapter_meta(folder)


def test_merged_model_computes_what_the_adapter_computes(tmp_path, tiny_model, tiny_adapter, monkeypatch):
    import shutil

    import torch
    from peft import PeftModel
    from tiny_model import build_lora_adapter
    from transformers import AutoModelForCausalLM

    from workers.merged_model import merged_model_dir

    monkeypatch.setenv("DIALOGUELLM_HOME", str(tmp_path / "home"))
    merged = merged_model_dir(tiny_model, tiny_adapter)
    ids = torch.tensor([[5, 17, 99, 240, 7, 301]])
    with torch.no_grad():
        expected = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                             str(tiny_adapter))(ids).logits
        bare = AutoModelForCausalLM.from_pretrained(tiny_model)(ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(ids).logits
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert (bare - expected).abs().max() > 1e-2, "the adapter must change the logits for this test to mean anything"

    stamp = (merged / "config.json").stat().st_mtime_ns
    assert merged_model_dir(tiny_model, tiny_adapter) == merged  # cached, not merged again
    assert (merged / "config.json").stat().st_mtime_ns == stamp
    retrained = build_lora_adapter(tiny_model, tmp_path / "retrained", rank=8, seed=7)
    assert merged_model_dir(tiny_model, retrained) != merged  # another adapter: another folder
    shutil.rmtree(tmp_path / "home")


def test_class_and_decision_weights_are_recorded_and_served(tmp_path):
    """The adapter's meta round-trips; serving divides its class weights out before the temperature,
    and its decision weights choose the label while the probabilities stay the calibrated ones."""
    from pipeline.core.decision import undo_class_weights
    from workers.adapters import AdapterInfo, AdapterMeta, read_adapter_meta, write_adapter_meta
    from workers.engine import EmotionEngine

    meta = AdapterMeta(64, 512, {"meld": 1.0}, "conversation", 8, {"meld": {"neutral": 0.5, "fear": 2.0}},
                       {"meld": {"neutral": 1.0, "fear": 3.0}})
    write_adapter_meta(tmp_path, meta)
    assert read_adapter_meta(tmp_path) == meta
    engine = object.__new__(EmotionEngine)  # the probability path alone, no vLLM
    engine.adapters = {"conv": AdapterInfo("conv", str(tmp_path), 8, ("q_proj",), meta)}
    raw = {"neutral": 0.5, "fear": 0.5}
    served = engine._calibrated(raw, "conv", "meld")
    assert served == pytest.approx({"neutral": 0.8, "fear": 0.2}) == undo_class_weights(raw, meta.class_weights["meld"])
    assert engine._decide(served, "conv", "meld") == "neutral"  # 0.8 x 1 > 0.2 x 3
    assert engine._decide({"neutral": 0.7, "fear": 0.3}, "conv", "meld") == "fear"  # 0.9 > 0.7
    assert engine._decide({"neutral": 0.7, "fear": 0.3}, None, "meld") == "neutral"
