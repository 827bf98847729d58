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


def test_micro_f1_without_neutral_counts_only_the_emotions():
    gold = ["neutral", "neutral", "joy", "anger", "joy"]
    pred = ["neutral", "joy", "joy", "neutral", "anger"]
    r = classification_report(gold, pred, LABELS)
    # Emotions predicted: joy, joy, anger (1 right); emotions in gold: joy, anger, joy (1 found).
    # P = 1/3, R = 1/3: F = 1/3. The correct neutral adds nothing; accuracy would count it.
    assert r["micro_f1_without_neutral"] == pytest.approx(1 / 3)
    assert r["accuracy"] == pytest.approx(2 / 5)
    assert "micro-F1 w/o neutral=0.3333" in format_report(r)
    everything_neutral = classification_report(gold, ["neutral"] * 5, LABELS)
    assert everything_neutral["micro_f1_without_neutral"] == 0.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        classification_report(["joy"], [], LABELS)


def test_negative_and_per_class_recall_in_the_report():
    from pipeline.core.labels import NEGATIVE_LABELS, get_label_set
    from pipeline.watch.negative import NEGATIVE_LABELS as PAGE_NEGATIVE

    assert PAGE_NEGATIVE is NEGATIVE_LABELS  # the page, the alerts and the report: one definition
    assert set(NEGATIVE_LABELS["meld"]) == {"anger", "sadness", "disgust", "fear"}
    meld = get_label_set("meld")
    gold = ["anger", "sadness", "fear", "neutral", "joy", "disgust"]
    pred = ["sadness", "neutral", "fear", "anger", "joy", "joy"]
    r = classification_report(gold, pred, meld)
    # gold negative: 4 turns (anger, sadness, fear, disgust); predicted negative: 3 (sadness, fear, anger).
    # Both negative: turns 0 and 2 (any negative label counts, not the same one).
    assert r["negative"]["precision"] == pytest.approx(2 / 3) and r["negative"]["recall"] == pytest.approx(2 / 4)
    assert r["negative"]["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert r["recall"]["fear"] == 1.0 and r["recall"]["anger"] == 0.0 and r["recall"]["joy"] == 1.0
    assert "negative" in format_report(r)


def test_decision_weights_and_undoing_class_weights():
    from pipeline.core.decision import class_weights, decide, fit_decision_weights, undo_class_weights

    w = class_weights({"a": 80, "b": 20}, ("a", "b"), 1.0)
    assert w == pytest.approx({"a": 100 / 160, "b": 100 / 40})
    assert undo_class_weights({"a": 0.5, "b": 0.5}, w) == pytest.approx({"a": 0.8, "b": 0.2})
    assert decide({"a": 0.6, "b": 0.4}, None) == "a" and decide({"a": 0.6, "b": 0.4}, {"b": 2.0}) == "b"
    # A rare class the argmax never picks: the fitted weights make it count.
    probs = [[0.7, 0.3]] * 8 + [[0.6, 0.4]] * 2
    gold = [0] * 8 + [1] * 2
    d = fit_decision_weights(probs, gold, ("a", "b"))
    assert d["a"] == 1.0 and [decide(dict(zip("ab", p)), d) for p in probs] == ["a"] * 8 + ["b"] * 2


def test_the_fitted_decision_rule_also_counts_the_negative_turns_supervisors_act_on():
    from pipeline.core.decision import decide, fit_decision_weights, fit_serving

    labels = ("neutral", "joy", "anger", "sadness")
    # Negative turns the argmax calls neutral, whose runner-up is the wrong negative label: moving
    # them gains nothing per class, and the turns moved with them cost neutral F1; but each is a
    # negative turn caught, what "is this turn negative?" (negative-F1) counts.
    sad_looking, angry_looking = [0.6, 0.07, 0.03, 0.3], [0.6, 0.07, 0.3, 0.03]
    probs = [sad_looking] * 10 + [angry_looking] * 20 + [[0.9, 0.05, 0.03, 0.02]] * 30 + [[0.1, 0.8, 0.05, 0.05]] * 10
    gold = [2] * 10 + [3] * 10 + [0] * 10 + [0] * 30 + [1] * 10

    def negative_recall(d):
        chosen = [labels.index(decide(dict(zip(labels, p)), d)) for p in probs]
        return sum(c in (2, 3) for c, g in zip(chosen, gold) if g in (2, 3)) / 20

    assert negative_recall(fit_decision_weights(probs, gold, labels)) == 0.5
    assert negative_recall(fit_decision_weights(probs, gold, labels, negative=("anger", "sadness"))) == 1.0
    temperature, decision, served, _ = fit_serving(probs, gold, labels, ("anger", "sadness"))
    assert temperature > 0 and decision is not None and len(served) == len(probs)
    assert fit_serving(probs, gold, labels, fit_decision=False)[1] is None


def test_a_label_sets_decision_objective_can_be_micro_f1_without_neutral():
    from pipeline.core.decision import decide, fit_decision_weights
    from pipeline.core.labels import get_label_set
    from pipeline.core.metrics import classification_report

    labels = get_label_set("dailydialog").labels
    # 25 turns the argmax calls neutral, 10 of them happy: calling them happiness catches 10 more
    # emotions at 15 false alarms. That costs neutral's F1 more than it gains happiness's, so the
    # balanced objective keeps them neutral; micro-F1 over the emotions alone gains (0.667 -> 0.727).
    def row(neutral, happiness):
        return [neutral, happiness] + [0.0] * (len(labels) - 2)

    probs = [row(0.9, 0.1)] * 80 + [row(0.6, 0.4)] * 25 + [row(0.2, 0.8)] * 10
    gold = [0] * 80 + [1] * 10 + [0] * 15 + [1] * 10

    def micro(d):
        chosen = [decide(dict(zip(labels, p)), d) for p in probs]
        return classification_report([labels[g] for g in gold], chosen, get_label_set("dailydialog"))[
            "micro_f1_without_neutral"]

    balanced = fit_decision_weights(probs, gold, labels)
    emotions = fit_decision_weights(probs, gold, labels, objective="micro_f1_without_neutral")
    assert decide(dict(zip(labels, row(0.6, 0.4))), balanced) == "neutral"
    assert decide(dict(zip(labels, row(0.6, 0.4))), emotions) == "happiness"
    assert decide(dict(zip(labels, row(0.9, 0.1))), emotions) == "neutral"
    assert micro(balanced) == pytest.approx(2 / 3) and micro(emotions) == pytest.approx(40 / 55)
    with pytest.raises(ValueError, match="objective"):
        fit_decision_weights(probs, gold, labels, objective="accuracy")


def test_held_out_choices_label_each_part_by_weights_fitted_without_it():
    """On probabilities that carry no signal, weights fitted on every turn still find a "gain"
    on those turns; labelled by weights fitted on the other parts, the same turns show none."""
    import numpy as np

    from pipeline.core.decision import decide, f1_scores, fit_decision_weights, held_out_choices

    labels = ("neutral", "joy", "anger", "sadness")
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 3, size=200)
    probs[:, 0] += 0.3
    probs = (probs / probs.sum(1, keepdims=True)).tolist()
    gold = rng.choice(4, size=200, p=[0.5, 0.2, 0.2, 0.1]).tolist()

    chosen = held_out_choices(probs, gold, labels, folds=4)
    rest = list(range(50, 200))  # the first part, labelled by weights fitted on the other three
    first = fit_decision_weights([probs[i] for i in rest], [gold[i] for i in rest], labels)
    assert chosen[:50] == [labels.index(decide(dict(zip(labels, p)), first)) for p in probs[:50]]

    everywhere = fit_decision_weights(probs, gold, labels)
    in_sample = [labels.index(decide(dict(zip(labels, p)), everywhere)) for p in probs]
    argmax = [int(np.argmax(p)) for p in probs]

    def balanced(c):
        return sum(f1_scores(gold, c, 4)) / 2

    assert balanced(in_sample) > balanced(argmax) + 0.03  # 0.355 against 0.312
    assert balanced(chosen) < balanced(in_sample) - 0.03  # 0.311: no better than argmax
