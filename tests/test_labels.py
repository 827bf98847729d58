import pytest

from pipeline.core.errors import DataError
from pipeline.core.labels import LABEL_SETS, LabelSet, get_label_set


def test_each_dataset_declares_its_label_set():
    assert get_label_set("meld").labels == ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
    assert len(get_label_set("emorynlp")) == 7
    assert len(get_label_set("iemocap")) == 6
    assert "neutral" in get_label_set("dailydialog")


def test_normalize_accepts_case_and_aliases():
    assert get_label_set("emorynlp").normalize("Joyful") == "joyful"
    assert get_label_set("dailydialog").normalize("none") == "neutral"
    assert get_label_set("iemocap").normalize("fru") == "frustrated"


def test_label_outside_the_set_names_the_place():
    with pytest.raises(DataError, match=r"train\.csv: row 7: label 'happy' is not in the meld label set"):
        get_label_set("meld").normalize("happy", "train.csv: row 7")


def test_unknown_label_set():
    with pytest.raises(DataError, match="unknown label set 'nope'"):
        get_label_set("nope")


def test_label_set_rejects_duplicates():
    with pytest.raises(ValueError):
        LabelSet("dup", ("a", "a"))
    assert "meld" in LABEL_SETS
