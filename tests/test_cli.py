"""The `dialoguellm` command: bad input gives one line, a non-zero exit and no traceback."""

import json
import re

import pytest


def _one_line_error(result, pattern):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("dialoguellm: error: ")
    assert pattern in lines[0], lines[0]


def test_unknown_dataset(run_cli):
    _one_line_error(run_cli("eval", "--dataset", "friends", "--split", "test"), "argument --dataset: invalid choice: 'friends'")


def test_missing_file(run_cli, tmp_path):
    _one_line_error(run_cli("eval", "--dataset", "meld", "--data", str(tmp_path / "none.csv")), "not found")


def test_label_outside_the_set(run_cli, tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"conversation_id": "a", "turn_id": 0, "speaker": "A", "text": "hi", "label": "bored"}\n')
    _one_line_error(run_cli("eval", "--dataset", "jsonl", "--data", str(f)),
                    "t.jsonl: row 1: label 'bored' is not in the meld label set")


def test_empty_utterance(run_cli, tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"conversation_id": "a", "turn_id": 0, "speaker": "A", "text": " ", "label": "joy"}\n')
    _one_line_error(run_cli("eval", "--dataset", "jsonl", "--data", str(f)), "row 1: empty utterance")


def test_target_alone_over_the_context_window(run_cli, tmp_path, tiny_model):
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"conversation_id": "a", "turn_id": 0, "speaker": "A",
                             "text": "so " * 400, "label": "joy"}) + "\n")
    _one_line_error(run_cli("eval", "--dataset", "jsonl", "--data", str(f), "--model", str(tiny_model),
                            "--max-model-len", "128"), "turn 0 of conversation a alone takes")


def test_adapter_that_is_not_peft(run_cli, tmp_path):
    _one_line_error(run_cli("eval", "--dataset", "meld", "--adapter", f"x={tmp_path}"), "is not a PEFT adapter")


def test_adapter_rank_over_the_maximum(run_cli, tiny_adapter):
    _one_line_error(run_cli("eval", "--dataset", "meld", "--adapter", f"t={tiny_adapter}", "--max-lora-rank", "4"),
                    "LoRA rank 8 exceeds the engine's maximum 4")


def test_bad_adapter_spec(run_cli):
    _one_line_error(run_cli("eval", "--dataset", "meld", "--adapter", "nopath"), "expected NAME=PATH")


@pytest.mark.engine
def test_eval_writes_report_and_plot(run_cli, tmp_path, tiny_model, tiny_adapter):
    report = tmp_path / "r.json"
    result = run_cli("eval", "--dataset", "meld", "--split", "test", "--limit", "24", "--model", str(tiny_model),
                     "--adapter", f"tiny={tiny_adapter}", "--max-model-len", "256", "--kv-cache-gib", "1",
                     "--report", str(report), env={"VLLM_LOGGING_LEVEL": "INFO"})
    assert result.returncode == 0, result.stderr[-3000:]
    # vLLM's own lines (shown here: the level was set by hand) go to stderr; stdout holds our results only.
    assert re.search(r"^\(\w+ pid=\d+\) INFO ", result.stderr, re.M), result.stderr[-2000:]
    assert " pid=" not in result.stdout, result.stdout
    r = json.loads(report.read_text())
    assert {"n", "accuracy", "weighted_f1", "macro_f1", "per_class", "confusion_matrix", "labels", "model",
            "adapter"} <= set(r)
    assert r["n"] == 24 and r["adapter"] == "tiny" and r["model"] == str(tiny_model)
    assert sum(map(sum, r["confusion_matrix"])) == 24
    assert report.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "weighted-F1=" in result.stdout


@pytest.mark.engine
@pytest.mark.parametrize("redis_url, redis_line", [
    ("redis://127.0.0.1:6379/0", "redis: redis://127.0.0.1:6379/0;"),
    ("redis://127.0.0.1:1/0", "redis: embedded server at unix://"),  # a fresh machine: nothing answers
])
def test_demo_streams_a_conversation_through_the_worker(run_cli, tiny_model, data_root, redis_url, redis_line):
    from pipeline.core.datasets import load_dataset

    conv = {c.conversation_id: c for c in load_dataset("meld", "test", data_root)}["1"]
    result = run_cli("demo", "--conversation", "1", "--model", str(tiny_model), "--max-model-len", "256",
                     "--kv-cache-gib", "1", "--redis", redis_url)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(redis_line)
    assert any(line.startswith("pushed MELD test conversation 1") for line in lines)
    labels = {int(line.split()[0].split("/")[1]): line for line in lines if line.startswith("1/")}
    assert sorted(labels) == [t.turn_id for t in conv.turns]
    for turn in conv.turns:
        line = labels[turn.turn_id]
        assert line.split()[1] in ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
        assert f"(gold {turn.label})" in line and line.endswith(" ms")
    right = sum(labels[t.turn_id].split()[1] == t.label for t in conv.turns)
    assert lines[-1] == (f"worker stopped cleanly: {len(conv.turns)} turns labelled ({right} as the gold label), "
                         "0 dead-lettered")


def test_the_demo_says_why_a_label_need_not_be_the_most_probable():
    from pipeline.stream.demo import decision_note

    assert decision_note(None) is None and decision_note({"neutral": 1.0, "anger": 1.0}) is None
    note = decision_note({"neutral": 1.0, "joy": 1.0, "anger": 2.718, "fear": 4.48})
    assert note.startswith("labels: the largest p x w") and "(fear x4.48, anger x2.72)" in note
    assert "neutral" not in note and "calibrated p" in note
