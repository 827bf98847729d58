import pytest

from pipeline.core.labels import LabelSet
from pipeline.core.metrics import classification_report, format_report

LABELS = LabelSet("t", ("neutral", "joy", "anger"))


def test_report_matches_hand_computed_figures():
    gold = ["neutral", "neutral", "joy", "anger"]
    pred = ["neutral", "joy", "joy", "neutral"]
    r = classification_report(gold, pred, LABELS)
    assert r["n"] == 4
    assert r["accuracy"] == pytest.approx(0.5)
    # neutral: P=1/2 R=1/2 F=1/2; joy: P=1/2 R=1 F=2/3; anger: 0. Weighted by support 2,1,1.
    assert r["per_class"]["joy"]["f1"] == pytest.approx(2 / 3)
    assert r["weighted_f1"] == pytest.approx((2 * 0.5 + 2 / 3 + 0) / 4)
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert r["labels"] == ["neutral", "joy", "anger"]
    assert "weighted-F1=0.4167" in format_report(r)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        classification_report(["joy"], [], LABELS)
