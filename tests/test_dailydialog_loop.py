"""The DailyDialog adaptation-loop driver's pure parts (deploy/demos/dailydialog_loop.py):
the resolved training config, the page's picks, the live figures. The loop itself is run end to end
by hand (its README's smoke test): it needs serve, watch, Chromium and the real model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LOOP = REPO / "deploy" / "demos" / "dailydialog_loop.py"
CONFIG = REPO / "training" / "adapters" / "dailydialog-demo" / "config.yaml"


@pytest.fixture(scope="module")
def loop():
    spec = importlib.util.spec_from_file_location("dailydialog_loop", LOOP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_config_is_resolved_to_the_runs_export_and_folder_and_overridden(loop, tmp_path):
    raw = yaml.safe_load(CONFIG.read_text())
    resolved = loop.resolve_train_config(raw, tmp_path / "export", tmp_path / "adapter",
                                         ["optim.epochs=3", "train.1.limit=32", "dev.1.limit=null"])
    assert resolved["output_dir"] == str(tmp_path / "adapter")
    assert [s.get("path") for s in resolved["train"]] == [str(tmp_path / "export"), None]
    assert resolved["dev"][0]["path"] == str(tmp_path / "export") and resolved["dev"][1]["limit"] is None
    assert resolved["optim"]["epochs"] == 3 and resolved["train"][1]["limit"] == 32
    assert raw == yaml.safe_load(CONFIG.read_text())  # the committed config is untouched
    with pytest.raises(loop.LoopError, match="expected KEY=VALUE"):
        loop.resolve_train_config(raw, tmp_path, tmp_path, ["optim.epochs"])
    with pytest.raises(loop.LoopError, match="no such field"):
        loop.resolve_train_config(raw, tmp_path, tmp_path, ["train.7.limit=3"])


def test_the_config_has_the_shipped_adapters_shape_and_prompt(loop):
    import json

    raw = yaml.safe_load(CONFIG.read_text())
    shipped = REPO / "training" / "default_adapter"
    peft = json.loads((shipped / "adapter_config.json").read_text())
    prompt = json.loads((shipped / "dialoguellm_adapter.json").read_text())
    assert raw["init_adapter"] == "default"
    assert (raw["lora"]["r"], raw["lora"]["alpha"]) == (peft["r"], peft["lora_alpha"])
    assert sorted(raw["lora"]["target_modules"]) == sorted(peft["target_modules"])
    assert raw["lora"]["top_layers"] == len(peft["layers_to_transform"])
    assert (raw["context_turns"], raw["max_model_len"]) == (prompt["context_turns"], prompt["max_model_len"])
    assert raw["prompt"] == prompt.get("prompt", "dialoguellm")
    assert raw.get("window_step") == prompt.get("window_step")


def test_the_page_gets_turns_served_wrong_with_an_emotion_first_one_per_conversation(loop):
    served = {("a", 0): "neutral", ("a", 1): "neutral", ("b", 0): "anger", ("c", 0): "neutral", ("d", 0): "joy"}
    gold = {("a", 0): "neutral", ("a", 1): "anger", ("b", 0): "neutral", ("c", 0): "neutral", ("d", 0): "sadness"}
    labels = {k: SimpleNamespace(label=v) for k, v in served.items()}
    assert loop.pick_page_turns(sorted(served), labels, gold, 3) == [("a", 1), ("d", 0), ("b", 0)]


def test_live_figures_are_by_the_adapter_each_label_names(loop):
    def label(name, value):
        return SimpleNamespace(adapter=name, label=value)

    labels = {("a", 0): [label("default", "neutral")], ("a", 1): [label("dd-v1", "anger")],
              ("b", 0): [label("dd-v1", "neutral")]}
    gold = {("a", 0): "neutral", ("a", 1): "anger", ("b", 0): "happiness"}
    live = loop.live_figures(labels, gold)
    assert live["labels_per_adapter"] == {"default": 1, "dd-v1": 2}
    assert live["by_adapter"]["dd-v1"]["n"] == 2 and live["by_adapter"]["all"]["n"] == 3
    assert live["by_adapter"]["dd-v1"]["micro_f1_without_neutral"] == pytest.approx(2 / 3)  # P 1, R 1/2
    assert live["by_adapter"]["default"]["gold_emotions"] == 0
