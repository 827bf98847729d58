"""Batch labelling: manifests, resuming, and `dialoguellm label` end to end (real Ray Data, vLLM, PyAV)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.errors import DataError
from pipeline.labelling.manifest import add_context, normalise, read_table

REPO = Path(__file__).resolve().parents[1]


def test_meld_csv_is_read_as_it_is(data_root):
    rows = normalise(read_table(data_root / "MELD" / "test_sent_emo.csv"), "/clips", "meld", "test.csv")
    first = rows.iloc[1]
    assert (first["_conversation_id"], first["_turn_id"], first["_speaker"]) == ("0", 1, "Rachel")
    assert first["_video_uri"] == "/clips/dia0_utt1.mp4"
    assert first["_end"] == pytest.approx(6.756)  # 00:14:47,385 - 00:14:40,629
    assert first["_gold"] == "anger" and list(rows["_row"][:3]) == [0, 1, 2]
    assert "Sentiment" in rows.columns  # every input column is kept


def test_our_layout_in_jsonl_and_parquet(tmp_path):
    table = pd.DataFrame({"conversation_id": ["a", "a", "b"], "turn_id": [1, 0, 0], "speaker": ["X", "Y", "Z"],
                          "text": ["second", "first", "other"], "video_uri": ["v.mp4", None, "/abs/w.mp4"],
                          "start": [1.0, None, 0.5], "end": [2.0, None, 1.0], "label": ["Joy", "neutral", None]})
    table.to_parquet(tmp_path / "m.parquet")
    table.to_json(tmp_path / "m.jsonl", orient="records", lines=True)
    for name in ("m.parquet", "m.jsonl"):
        rows = add_context(normalise(read_table(tmp_path / name), "/videos", "meld", name), 2)
        assert [None if pd.isna(v) else v for v in rows["_video_uri"]] == ["/videos/v.mp4", None, "/abs/w.mp4"]
        assert [None if pd.isna(v) else v for v in rows["_gold"]] == ["joy", "neutral", None]
        assert json.loads(rows["_context"][0]) == [[0, "Y", "first", None]] and json.loads(rows["_context"][1]) == []


@pytest.mark.parametrize("table, message", [
    (pd.DataFrame({"conversation_id": ["a"], "speaker": ["X"], "text": ["t"]}), "missing column(s) turn_id"),
    (pd.DataFrame({"conversation_id": ["a"], "turn_id": ["x"], "speaker": ["X"], "text": ["t"]}),
     "row 1: turn_id must be an integer ≥ 0, got 'x'"),
    (pd.DataFrame({"conversation_id": ["a"], "turn_id": [0], "speaker": ["X"], "text": ["t"], "label": ["meh"]}),
     "row 1: label 'meh' is not in the meld label set"),
])
def test_a_bad_manifest_names_the_row_and_column(table, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalise(table, None, "meld", "m.jsonl")


def test_a_file_cut_short_is_removed_and_its_rows_redone(tmp_path, capsys):
    from pipeline.labelling.job import MARKER, done_rows

    out = tmp_path / "labels.parquet"
    out.mkdir()
    (out / MARKER).write_text("")
    pd.DataFrame({"manifest_row": [0, 1, 2]}).to_parquet(out / "labels_a_000000.parquet")
    pd.DataFrame({"manifest_row": list(range(3, 100))}).to_parquet(out / "labels_b_000001.parquet")
    data = (out / "labels_b_000001.parquet").read_bytes()
    (out / "labels_b_000001.parquet").write_bytes(data[: len(data) // 2])
    (out / "notes.parquet").write_bytes(b"not ours, not readable")  # a user's file: never touched
    assert done_rows(out) == {0, 1, 2}
    assert not (out / "labels_b_000001.parquet").exists()
    assert "removing labels_b_000001.parquet" in capsys.readouterr().err
    assert (out / "notes.parquet").read_bytes() == b"not ours, not readable"


def test_a_folder_this_job_did_not_write_is_refused(tmp_path):
    from pipeline.core.errors import DataError
    from pipeline.labelling.job import done_rows

    out = tmp_path / "results.parquet"
    out.mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(out / "precious.parquet")
    with pytest.raises(DataError, match="did not write"):
        done_rows(out)
    assert (out / "precious.parquet").exists()
    assert done_rows(tmp_path / "new.parquet") == set()


def _label(args: list[str], tiny_model: Path, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipeline.cli", "label", *args, "--model", str(tiny_model), "--max-model-len", "256",
           "--kv-cache-gib", "0.5", "--json"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


def _summary(proc: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.engine
def test_videos_and_text_are_labelled_and_a_missing_video_says_why(tiny_model, data_root, tmp_path):
    from skimage import data

    from workers.video.synthetic import make_video

    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "face.mp4", 2, 25, "libx264", size=(384, 384), image=data.astronaut())
    make_video(videos / "pattern.mp4", 2, 25, "mpeg4")
    make_video(tmp_path / "outside.mp4", 2, 25, "mpeg4")  # a real video, outside the root
    (videos / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    meld = pd.read_csv(data_root / "MELD" / "test_sent_emo.csv", dtype=str, keep_default_na=False).head(12)
    manifest = pd.DataFrame({
        "conversation_id": meld["Dialogue_ID"], "turn_id": meld["Utterance_ID"].astype(int),
        "speaker": meld["Speaker"], "text": meld["Utterance"], "label": meld["Emotion"],
        "video_uri": (["face.mp4", "pattern.mp4", "missing.mp4", None, "link.mp4", "/dev/zero"] * 2), "start": 0.0,
        "end": 1.5,
    })
    manifest.to_json(tmp_path / "manifest.jsonl", orient="records", lines=True)
    out = tmp_path / "labels.parquet"
    summary = _summary(_label(["--manifest", str(tmp_path / "manifest.jsonl"), "--video-root", str(videos),
                               "--out", str(out), "--cache-dir", str(tmp_path / "cache")], tiny_model))
    assert summary["rows"] == summary["labelled_now"] == 12 and "weighted_f1" in summary
    from pipeline.labelling.job import read_label_files

    rows = read_label_files(out)
    assert list(rows["manifest_row"]) == list(range(12)) and rows["label"].notna().all()
    assert set(rows.columns) >= {"conversation_id", "turn_id", "speaker", "text", "gold_label", "video_uri", "label",
                                 "confidence", "probs", "description", "error"}
    for _, row in rows.iterrows():
        assert abs(sum(json.loads(row["probs"]).values()) - 1) < 1e-3
        video = None if pd.isna(row["video_uri"]) else row["video_uri"]
        if video == "face.mp4":
            assert row["description"].startswith("One person faces the camera, smiling") and pd.isna(row["error"])
        elif video == "pattern.mp4":
            assert row["description"].startswith("No face is visible")
        elif video == "missing.mp4":
            assert pd.isna(row["description"])
            assert row["error"].startswith("video not described: cannot open ") and "missing.mp4" in row["error"]
        elif video in ("link.mp4", "/dev/zero"):  # the same policy as the stream's: never opened
            assert pd.isna(row["description"]) and row["error"].startswith("video not described: video ")
            assert "refused: resolves to" in row["error"]
        else:
            assert pd.isna(row["description"]) and pd.isna(row["error"])
    # Described once each: the cache holds the two readable segments.
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2


@pytest.mark.engine
def test_an_interrupted_run_resumes_without_redoing_rows(tiny_model, data_root, tmp_path):
    manifest = tmp_path / "meld.csv"
    lines = (data_root / "MELD" / "test_sent_emo.csv").read_text(encoding="utf-8").splitlines()
    manifest.write_text("\n".join(lines[:1201]) + "\n", encoding="utf-8")
    out = tmp_path / "labels.parquet"
    args = ["--manifest", str(manifest), "--out", str(out), "--describer", "none", "--batch-size", "50",
            "--rows-per-file", "50"]
    first = _label(args, tiny_model)
    deadline = time.monotonic() + 300
    while len(list(out.glob("*.parquet"))) < 3:
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()[-3000:]
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    summary = _summary(_label(args, tiny_model))
    assert summary["rows"] == 1200 and 0 < summary["already_done"] < 1200
    assert summary["labelled_now"] == 1200 - summary["already_done"]
    written = pd.read_parquet(out, columns=["manifest_row"])["manifest_row"]
    assert sorted(written) == list(range(1200))  # each row once


# In manifest order, rows 2 and 3 are both agents': with two rows a batch and a file, one file holds
# context-only rows alone.
CALL = [("c1", 0, "Customer", "My parcel never arrived."), ("c2", 1, "customer", "I want a refund."),
        ("c1", 1, "Agent", "Let me check that for you."), ("c2", 0, "Agent", "Hello, how can I help?"),
        ("c1", 2, "Customer", "It was due on Monday!"), ("c1", 3, "Agent", "It comes tomorrow.")]


def _call_manifest(path: Path) -> Path:
    pd.DataFrame(CALL, columns=["conversation_id", "turn_id", "speaker", "text"]).to_json(
        path, orient="records", lines=True)
    return path


def test_with_label_speakers_other_speakers_rows_stay_context(tmp_path):
    from pipeline.labelling.job import LabelJob, prepare

    job = LabelJob(manifest=str(_call_manifest(tmp_path / "call.jsonl")), out=str(tmp_path / "o.parquet"),
                   label_speakers="(?i)^customer$")
    rows, pending = prepare(job, 2)
    assert list(rows["_context_only"]) == [False, False, True, True, False, True]
    # The agent's turns are in the context of the customers' next ones, as the stream's context store has them.
    assert json.loads(rows["_context"][4]) == [[0, "Customer", "My parcel never arrived.", None],
                                               [1, "Agent", "Let me check that for you.", None]]
    assert json.loads(rows["_context"][1]) == [[0, "Agent", "Hello, how can I help?", None]]
    everyone, _ = prepare(LabelJob(manifest=job.manifest, out=job.out), 2)
    assert not everyone["_context_only"].any()


@pytest.mark.engine
def test_label_with_label_speakers_labels_customers_only(tiny_model, tmp_path):
    out = tmp_path / "labels.parquet"
    summary = _summary(_label(["--manifest", str(_call_manifest(tmp_path / "call.jsonl")), "--out", str(out),
                               "--describer", "none", "--label-speakers", "(?i)^customer$", "--rows-per-file",
                               "2", "--batch-size", "2"], tiny_model))
    assert summary["rows"] == 6 and summary["labelled_now"] == 3 and summary["context_only"] == 3
    from pipeline.labelling.job import read_label_files

    rows = read_label_files(out)  # one of the three files holds context-only rows alone: same schema
    assert list(rows["manifest_row"]) == list(range(6))
    for _, row in rows.iterrows():
        if row["speaker"].lower() == "customer":
            assert not row["context_only"] and isinstance(row["label"], str) and row["confidence"] > 0
            assert abs(sum(json.loads(row["probs"]).values()) - 1) < 1e-3
        else:
            assert row["context_only"] and pd.isna(row["label"]) and pd.isna(row["confidence"])
            assert pd.isna(row["probs"])
        assert pd.isna(row["error"])


def test_the_output_holds_the_utterances_redacted_unless_raw_text_is_asked():
    import pandas as pd

    from pipeline.core.redaction import redactor
    from pipeline.labelling.manifest import output_columns

    batch = pd.DataFrame({"conversation_id": ["c"], "turn_id": [0], "speaker": ["Customer"],
                          "text": ["card 4111 1111 1111 1111, order 1234 5678 9012 3456"], "_row": [0],
                          "label": ["anger"], "confidence": [0.9], "probs": ['{"anger": 0.9}'], "description": [None],
                          "error": [""], "context_only": [False]})
    redacted = output_columns(batch, redactor()).to_pandas()["text"][0]
    assert redacted == "card <CARD>, order 1234 5678 9012 3456"
    assert output_columns(batch).to_pandas()["text"][0] == batch["text"][0]
