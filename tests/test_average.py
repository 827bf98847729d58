"""`dialoguellm average`: the mean of adapters' weight updates, as one LoRA adapter."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.core.errors import AdapterError


def _deltas(model_dir, adapter):
    """Each adapted weight's update, as PEFT merges it (merged weight minus base weight)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64).state_dict()
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64),
                                       str(adapter)).merge_and_unload().state_dict()
    return {k: merged[k] - base[k] for k in base if not torch.equal(merged[k], base[k])}


def test_the_average_merges_to_the_mean_of_the_members_updates(run_cli, tmp_path, tiny_model, tiny_adapter,
                                                                 second_tiny_adapter):
    import torch

    from training.average import RECORD_FILE
    from workers.adapters import AdapterMeta, check_adapter, read_adapter_meta, write_adapter_meta

    members = []
    for i, source in enumerate((tiny_adapter, second_tiny_adapter)):
        members.append(shutil.copytree(source, tmp_path / f"m{i}"))
        write_adapter_meta(members[-1], AdapterMeta(4, 256, {"meld": 1.1 + i}, "conversation", 8,
                                                    {"meld": {"neutral": 0.5, "fear": 2.0}},
                                                    {"meld": {"neutral": 1.0, "fear": 2.0 + i}}))
    out = tmp_path / "average"
    result = run_cli("average", f"a={members[0]}", f"b={members[1]}", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 16 (exact)" in result.stdout and "dialoguellm calibrate" in result.stdout

    first, second, got = (_deltas(tiny_model, a) for a in (*members, out))
    assert set(got) == set(first) == set(second) and got
    for key, delta in got.items():
        expected = (first[key] + second[key]) / 2
        assert torch.allclose(delta, expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item()), key
        assert (first[key] - second[key]).abs().max() > 10 * (delta - expected).abs().max()  # seeds differ
    assert check_adapter("average", out, 16).rank == 16
    # Serving's prompt and class weights carry over; the members' fitted rules do not (calibrate refits).
    meta = read_adapter_meta(out)
    assert (meta.prompt, meta.context_turns, meta.class_weights) == ("conversation", 4, {"meld": {"neutral": 0.5,
                                                                                                   "fear": 2.0}})
    assert meta.temperatures == {} and meta.decision_weights == {}
    record = json.loads((out / RECORD_FILE).read_text())
    assert [m["name"] for m in record["members"]] == ["a", "b"] and record["exact"] is True

    again = run_cli("average", f"a={members[0]}", f"b={members[1]}", "--out", str(out))
    assert again.returncode == 2 and "out:" in again.stderr and "exists" in again.stderr


def test_a_rank_cut_keeps_each_modules_best_approximation(tmp_path, tiny_model, tiny_adapter, second_tiny_adapter):
    import torch

    from training.average import average_adapters

    exact = average_adapters([("a", tiny_adapter), ("b", second_tiny_adapter)], tmp_path / "exact", progress=str)
    cut = average_adapters([("a", tiny_adapter), ("b", second_tiny_adapter)], tmp_path / "cut", rank=5, progress=str)
    assert exact["rank"] == 16 and exact["exact"] and cut["rank"] == 5 and not cut["exact"]
    full, short = _deltas(tiny_model, tmp_path / "exact"), _deltas(tiny_model, tmp_path / "cut")
    for key, delta in full.items():
        u, s, vh = torch.linalg.svd(delta)
        best = (u[:, :5] * s[:5]) @ vh[:5]  # Eckart-Young: no rank-5 matrix is closer to the mean update
        assert torch.allclose(short[key], best, atol=1e-8 * s[0].item()), key
        module = next(m for m in cut["left_out"] if key.startswith(m.removeprefix("base_model.model.")))
        assert cut["left_out"][module] == pytest.approx((s[5:].square().sum() / s.square().sum()).sqrt().item())
    assert 0 < cut["largest_left_out"] < 1


def test_adapters_of_other_recipes_are_refused_naming_what_differs(tmp_path, tiny_adapter, second_tiny_adapter):
    from training.average import average_adapters
    from workers.adapters import AdapterMeta, write_adapter_meta

    other = shutil.copytree(second_tiny_adapter, tmp_path / "other")
    write_adapter_meta(other, AdapterMeta(prompt="conversation"))
    with pytest.raises(AdapterError, match="'b' was trained with another prompt than 'a'"):
        average_adapters([("a", tiny_adapter), ("b", other)], tmp_path / "x", progress=str)
    config = json.loads((other / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["q_proj"]}))
    with pytest.raises(AdapterError, match="'b' differs from 'a' in adapter_config target_modules"):
        average_adapters([("a", tiny_adapter), ("b", other)], tmp_path / "y", progress=str)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
