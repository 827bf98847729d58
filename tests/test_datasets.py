import json
from pathlib import Path

import pytest

from pipeline.core.datasets import load_dataset, resolve_data_root
from pipeline.core.errors import DataError
from pipeline.core.labels import get_label_set

HERE = Path(__file__).parent / "data"


def test_meld_test_split_has_its_documented_counts(data_root):
    convs = load_dataset("meld", "test", data_root)
    assert len(convs) == 280
    assert sum(len(c.turns) for c in convs) == 2610
    first = next(c for c in convs if c.conversation_id == "0")
    assert [t.turn_id for t in first.turns] == sorted(t.turn_id for t in first.turns)
    assert first.turns[0].speaker == "Mark" and first.turns[0].label == "surprise"
    assert first.turns[0].text.startswith("Why do all you’re coffee mugs")


def test_emorynlp_dag_erc_and_release_forms_agree(data_root):
    dag = load_dataset("emorynlp", "dev", data_root)
    release = load_dataset("emorynlp", "dev", data_root / "EmoryNLP" / "emotion-detection-dev.json")
    assert sum(len(c.turns) for c in dag) == sum(len(c.turns) for c in release) == 1344
    assert [t.text for t in dag[0].turns] == [t.text for t in release[0].turns]
    assert {t.label for c in dag for t in c.turns} == set(get_label_set("emorynlp").labels)


def test_emorynlp_train_counts(data_root):
    convs = load_dataset("emorynlp", "train", data_root)
    assert (len(convs), sum(len(c.turns) for c in convs)) == (713, 9934)


def test_dailydialog_none_reads_as_neutral(data_root):
    convs = load_dataset("dailydialog", "dev", data_root)
    assert sum(len(c.turns) for c in convs) == 8069
    assert convs[0].turns[0].label == "neutral"


def test_iemocap_per_dialogue_json_with_short_labels():
    convs = load_dataset("iemocap", "test", HERE)
    assert [t.label for t in convs[0].turns] == ["frustrated", "neutral", "angry", "neutral"]
    assert convs[1].turns[0].label == "excited"


def test_jsonl_orders_turns_and_keeps_video_and_description():
    convs = load_dataset("jsonl", "test", HERE / "conversations.jsonl")
    call = convs[0]
    assert [t.turn_id for t in call.turns] == [0, 1, 2]
    assert call.turns[0].video.uri == "calls/1.mp4" and call.turns[0].video.end == 3.5
    assert call.turns[2].description.startswith("One person faces the camera")
    assert convs[1].turns[0].label is None


def test_label_outside_the_set_names_file_and_row(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"
                 "1,Hi there,Ann,neutral,neutral,0,0\n2,Whoa,Bob,excitement,positive,0,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv: row 3: label 'excitement' is not in the meld label set"):
        load_dataset("meld", "test", f)


def test_empty_utterance_is_an_error(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(json.dumps([[{"text": "  ", "speaker": "A", "label": "none"}]]))
    with pytest.raises(DataError, match=r"d\.json: row 1: empty utterance"):
        load_dataset("dailydialog", "dev", f)


def test_missing_file_and_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="meld test split not found"):
        load_dataset("meld", "test", tmp_path)
    with pytest.raises(DataError, match="unknown dataset 'friends'"):
        load_dataset("friends", "test", tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("meld", "validation", tmp_path)


def test_bad_jsonl_rows(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"conversation_id": "a", "turn_id": -1, "speaker": "A", "text": "hi"}\n')
    with pytest.raises(DataError, match=r"x\.jsonl: row 1: turn_id must be an integer"):
        load_dataset("jsonl", "test", f)
    f.write_text("not json\n")
    with pytest.raises(DataError, match=r"row 1: not JSON"):
        load_dataset("jsonl", "test", f)


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIALOGUELLM_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    assert resolve_data_root("/elsewhere") == Path("/elsewhere")
