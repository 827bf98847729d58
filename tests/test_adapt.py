"""Adapting to the users' calls: training from corrections (weighted sources, `init_adapter`) and
`dialoguellm gate` (the pure decision on given reports; the command on the tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.core.errors import ConfigError
from pipeline.core.gate import CORRECTIONS, GUARD, GateSet, decide, format_table
from pipeline.core.labels import get_label_set
from training.config import load_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "training" / "configs" / "tiny.yaml"


def report(wf1: float, mf1: float = 0.3, n: int = 100) -> dict:
    return {"weighted_f1": wf1, "macro_f1": mf1, "n": n}


# ---- the gate's decision, pure ------------------------------------------------------------------

def test_the_gate_passes_only_when_better_on_the_corrections_and_within_the_margin_elsewhere():
    better = GateSet("corrections", CORRECTIONS, report(0.60), report(0.50))
    same = GateSet("corrections", CORRECTIONS, report(0.50), report(0.50))
    slightly_worse = GateSet("meld dev", GUARD, report(0.575), report(0.59))
    much_worse = GateSet("meld dev", GUARD, report(0.55), report(0.59))
    assert decide([better, slightly_worse], margin=0.02).passed
    assert not decide([better, much_worse], margin=0.02).passed
    assert decide([better, much_worse], margin=0.05).passed
    assert not decide([same, slightly_worse], margin=0.02).passed  # equal is not better
    assert not decide([slightly_worse], margin=0.02).passed  # no corrections set: nothing shows it is better
    # At exactly the margin it passes; by macro-F1 the decision reads the other figure.
    at_margin = GateSet("meld dev", GUARD, report(0.57), report(0.59))
    assert decide([better, at_margin], margin=0.02).passed
    by_macro = GateSet("corrections", CORRECTIONS, report(0.60, mf1=0.2), report(0.50, mf1=0.3))
    assert decide([better, slightly_worse], 0.02, "weighted_f1").passed and not decide([by_macro], 0.02, "macro_f1").passed
    decision = decide([better, much_worse], margin=0.02)
    assert decision.reasons == ["corrections: weighted_f1 +0.1000 (better)",
                                "meld dev: weighted_f1 -0.0400 (beyond the margin 0.02)"]
    table = format_table([better, much_worse], "new", "default").splitlines()
    assert table[0].split()[:3] == ["set", "role", "n"] and "+0.1000" in table[2] and "-0.0400" in table[3]


# ---- training from corrections ------------------------------------------------------------------

def _write(tmp_path, **changes) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _export(folder: Path, conversations: int = 6, label_set: str = "dailydialog") -> Path:
    """A small corrections export: each conversation a customer turn corrected, with one turn before it."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = ("happiness", "anger", "sadness", "neutral")
    for part, start in (("train", 0), ("dev", 100)):
        rows = []
        for i in range(start, start + conversations):
            rows.append({"conversation_id": f"c{i}", "turn_id": 0, "speaker": "Agent", "text": "How can I help?"})
            rows.append({"conversation_id": f"c{i}", "turn_id": 1, "speaker": "Customer",
                         "text": f"This is call {i} and I feel {labels[i % 4]}.", "label": labels[i % 4]})
        (folder / f"{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "manifest.json").write_text(json.dumps({"label_set": label_set}))
    return folder


def test_sources_take_a_weight_and_a_jsonl_export_its_label_set(tmp_path):
    from pipeline.core.evaluation import label_requests
    from pipeline.core.turns import Conversation, Turn
    from training.examples import requests_from, weighted

    export = _export(tmp_path / "corrections")
    config = load_config(_write(tmp_path, train=[{"dataset": "jsonl", "split": "train", "path": str(export), "weight": 3},
                                                 {"dataset": "meld", "split": "train", "limit": 10}]))
    requests = requests_from(config.train, 1)
    assert [r.label_set for r in requests].count("dailydialog") == 18 and len(requests) == 28
    assert requests[0].turn.label == "happiness" and len(requests[0].context) == 1
    conversations = [Conversation(f"c{i}", (Turn(f"c{i}", 0, "A", "x", label="joy"),)) for i in range(1000)]
    half = weighted(label_requests(conversations, 0), 0.5, seed=3)
    assert 450 < len(half) < 550 and half == weighted(label_requests(conversations, 0), 0.5, seed=3)
    assert 2450 < len(weighted(label_requests(conversations, 0), 2.5, seed=3)) < 2550
    for change, message in (({"weight": 0}, "train[0].weight: must be > 0"),
                            ({"label_set": "sitcom"}, "train[0].label_set: unknown label set 'sitcom'")):
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_config(_write(tmp_path, train=[{"dataset": "jsonl", "split": "train", "path": str(export), **change}]))
    with pytest.raises(ConfigError, match=r"dev\[0\].weight: weights apply to train sources only"):
        load_config(_write(tmp_path, dev=[{"dataset": "meld", "split": "dev", "weight": 2.0}]))


def test_init_adapter_must_have_the_configs_lora_shape(tmp_path, tiny_adapter):
    assert load_config(_write(tmp_path, init_adapter=str(tiny_adapter))).init_adapter == str(tiny_adapter)
    with pytest.raises(ConfigError, match="^lora.r: 4 differs from init_adapter's 8"):
        load_config(_write(tmp_path, init_adapter=str(tiny_adapter), lora={"r": 4, "alpha": 16,
                                                                           "target_modules": ["q_proj", "v_proj"]}))
    with pytest.raises(ConfigError, match="^init_adapter: .* is not a PEFT adapter folder"):
        load_config(_write(tmp_path, init_adapter=str(tmp_path)))
    shipped = load_config(REPO / "training" / "configs" / "smollm2-135m-cpu.yaml")
    from dataclasses import replace

    from training.config import check_init_adapter

    check_init_adapter(replace(shipped, init_adapter="default"))  # the shipped recipe continues the shipped adapter


def test_training_starts_from_the_init_adapter(tmp_path, tiny_model, tiny_adapter):
    """One run from a fresh LoRA and one from the adapter, at a learning rate too small to move
    anything: the second's checkpoint is the adapter it started from."""
    from safetensors.torch import load_file

    from training.loop import run_training

    export = _export(tmp_path / "corrections", label_set="meld")
    for i, name in enumerate(("train", "dev")):  # MELD labels for the tiny model's label tokens
        text = (export / f"{name}.jsonl").read_text()
        for old, new in (("happiness", "joy"),):
            text = text.replace(old, new)
        (export / f"{name}.jsonl").write_text(text)
    common = dict(model=str(tiny_model), optim={"learning_rate": 1e-12, "epochs": 1, "batch_size": 4},
                  train=[{"dataset": "jsonl", "split": "train", "path": str(export), "weight": 2}],
                  dev=[{"dataset": "jsonl", "split": "dev", "path": str(export)}])
    start = load_file(tiny_adapter / "adapter_model.safetensors")
    for init in (None, str(tiny_adapter)):
        root = tmp_path / f"run-{bool(init)}"
        config = load_config(_write(tmp_path, init_adapter=init, output_dir=str(root / "out"), **common))
        metrics = run_training(config, checkpoint_root=root, log=lambda _: None)
        assert metrics["train_examples"] == 12 and "dev_weighted_f1_meld" in metrics
        saved = load_file(root / "epoch-0" / "adapter_model.safetensors")
        assert saved.keys() == start.keys()
        worst = max(float((saved[k] - start[k]).abs().max()) for k in start)
        assert (worst < 1e-6) if init else (worst > 1e-3)


# ---- the gate command on the tiny model ---------------------------------------------------------

@pytest.mark.engine
def test_gate_evaluates_both_adapters_on_the_same_sets_and_exits_by_the_decision(
        run_cli, tmp_path, tiny_model, tiny_adapter, second_tiny_adapter):
    export = _export(tmp_path / "corrections", conversations=8, label_set="meld")
    text = (export / "dev.jsonl").read_text().replace("happiness", "joy")
    (export / "dev.jsonl").write_text(text)
    report_path = tmp_path / "gate.json"
    result = run_cli("gate", "--candidate", f"new={second_tiny_adapter}", "--against", f"old={tiny_adapter}",
                     "--corrections", str(export), "--set", "meld:dev", "--limit", "24", "--model", str(tiny_model),
                     "--max-model-len", "256", "--max-lora-rank", "8", "--kv-cache-gib", "1", "--context", "1",
                     "--report", str(report_path), "--margin", "0.02", timeout=900)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    saved = json.loads(report_path.read_text())
    sets = [GateSet(s["name"], s["role"], s["candidate"], s["against"]) for s in saved["sets"]]
    assert [(s.role, s.candidate["n"]) for s in sets] == [("corrections", 8), ("guard", 24)]
    assert all(s.candidate["n"] == s.against["n"] for s in sets)  # the same turns for both
    assert sets[0].candidate != sets[0].against or sets[1].candidate != sets[1].against  # two different adapters
    decision = decide(sets, 0.02)
    assert saved["passed"] == decision.passed and result.returncode == (0 if decision.passed else 1)
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["set", "role", "n"] and lines[-2].startswith("gate ")
    assert ("gate PASSED" if decision.passed else "gate FAILED") in result.stdout


def test_the_shipped_recipe_continues_the_default_adapter_on_an_export(tmp_path):
    raw = yaml.safe_load((REPO / "training" / "configs" / "adapt" / "from-corrections.yaml").read_text())
    export = _export(tmp_path / "corrections")
    for source in raw["train"] + raw["dev"]:
        if source["dataset"] == "jsonl":
            source["path"] = str(export)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.init_adapter == "default" and [s.weight for s in config.train] == [4.0, 0.25]
    assert config.train[0].resolved_label_set() == "dailydialog"
    # ... with the prompt the shipped adapter was trained with; another one is refused at start
    raw["prompt"], raw["context_turns"] = "dialoguellm", 2
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="^prompt: 'dialoguellm' differs from init_adapter's 'conversation'"):
        load_config(path)


# ---- dialoguellm calibrate on the tiny model ---------------------------------------------------

@pytest.mark.engine
def test_calibrate_refits_temperature_and_decision_into_a_new_folder(run_cli, tmp_path, tiny_model, tiny_adapter):
    from workers.adapters import META_FILE, read_adapter_meta

    common = ("--set", "meld:dev", "--limit", "48", "--model", str(tiny_model), "--max-model-len", "256",
              "--max-lora-rank", "8", "--kv-cache-gib", "1", "--context", "1")
    original = (tiny_adapter / META_FILE).read_bytes() if (tiny_adapter / META_FILE).exists() else None
    figures = {}
    # The fitted rule here maximises another objective than the default (balanced, which training's
    # epoch ends fit and tests/test_metrics.py checks): the flag reaches the fit.
    objective_flags = {"argmax": (), "fitted": ("--objective", "meld=micro_f1_without_neutral")}
    for rule in ("argmax", "fitted"):
        out = tmp_path / f"recalibrated-{rule}"
        result = run_cli("calibrate", f"tiny={tiny_adapter}", "--out", str(out), "--decision-rule", rule, *common,
                         *objective_flags[rule], timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        saved = json.loads((out / "calibration.json").read_text())
        meta = read_adapter_meta(out)
        assert meta.temperatures["meld"] == saved["temperatures"]["meld"] > 0
        assert (out / "adapter_model.safetensors").read_bytes() == (tiny_adapter / "adapter_model.safetensors").read_bytes()
        [figures[rule]] = saved["sets"]
        assert figures[rule]["n"] == 48 and "wrote " + str(out) in result.stdout
        if rule == "fitted":
            assert set(meta.decision_weights["meld"]) == set(get_label_set("meld").labels)
            assert saved["objectives"] == {"meld": "micro_f1_without_neutral"}
            held_out = figures[rule]["held_out"]  # the rule's honest figures (tests/test_metrics.py: held_out_choices)
            assert set(held_out) == {"weighted_f1", "macro_f1", "negative_recall", "negative_precision"}
            assert all(0 <= v <= 1 for v in held_out.values()) and "held out (5 folds" in result.stdout
        else:
            assert "held_out" not in figures[rule] and "held out" not in result.stdout
    # A temperature never changes the argmax: the labels, hence the F1s, stay exactly as served.
    argmax = figures["argmax"]
    assert argmax["after"]["weighted_f1"] == argmax["before"]["weighted_f1"]
    assert argmax["after"]["macro_f1"] == argmax["before"]["macro_f1"]
    # The fitted rule starts from the argmax and only takes a change that raises its objective.
    fitted = figures["fitted"]
    assert fitted["after"]["micro_f1_without_neutral"] >= fitted["before"]["micro_f1_without_neutral"] - 1e-9
    assert ((tiny_adapter / META_FILE).read_bytes() if (tiny_adapter / META_FILE).exists() else None) == original
    again = run_cli("calibrate", f"tiny={tiny_adapter}", "--out", str(tmp_path / "recalibrated-argmax"), *common)
    assert again.returncode == 2 and "out:" in again.stderr and "exists" in again.stderr
