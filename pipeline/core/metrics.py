"""ERC metrics: accuracy, weighted-F1 (the paper's headline), macro-F1, micro-F1 without neutral
(DailyDialog's usual figure), per class, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.core.labels import NEUTRAL, LabelSet, negative_labels


def classification_report(gold: Sequence[str], predicted: Sequence[str], labels: LabelSet) -> dict[str, Any]:
    """The evaluation report as a JSON-ready dict (keys `n`, `accuracy`, `weighted_f1`, ...)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    order = list(labels.labels)
    if not gold:
        raise ValueError("nothing to evaluate: no labelled turns")
    p, r, f, support = precision_recall_fscore_support(
        gold, predicted, labels=order, average=None, zero_division=0
    )
    weighted = precision_recall_fscore_support(
        gold, predicted, labels=order, average="weighted", zero_division=0
    )[2]
    macro = precision_recall_fscore_support(gold, predicted, labels=order, average="macro", zero_division=0)[2]
    emotions = [label for label in order if label != NEUTRAL]
    # Micro over the emotions only: a neutral turn predicted as an emotion costs precision, an
    # emotion predicted as neutral costs recall, and the neutral majority adds nothing by itself.
    micro_without_neutral = precision_recall_fscore_support(
        gold, predicted, labels=emotions, average="micro", zero_division=0
    )[2]
    return {
        "n": len(gold),
        "accuracy": float(accuracy_score(gold, predicted)),
        "weighted_f1": float(weighted),
        "macro_f1": float(macro),
        "micro_f1_without_neutral": float(micro_without_neutral),
        "labels": order,
        "per_class": {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                    "support": int(support[i])}
            for i, label in enumerate(order)
        },
        "confusion_matrix": confusion_matrix(gold, predicted, labels=order).tolist(),
        "recall": {label: float(r[i]) for i, label in enumerate(order)},
        "negative": negative_report(gold, predicted, labels),
    }


def negative_report(gold: Sequence[str], predicted: Sequence[str], labels: LabelSet) -> dict[str, Any]:
    """"Is this turn negative?": precision, recall and F1 of predicting any negative label (the
    label set's `negative_labels`, the ones the supervisors' page and alerts act on) against gold."""
    negative = set(negative_labels(labels))
    g = [x in negative for x in gold]
    p = [x in negative for x in predicted]
    tp = sum(a and b for a, b in zip(g, p, strict=True))
    precision = tp / sum(p) if sum(p) else 0.0
    recall = tp / sum(g) if sum(g) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"labels": sorted(negative), "precision": precision, "recall": recall, "f1": f1,
            "support": sum(g), "predicted": sum(p)}


def headline(report: dict[str, Any]) -> dict[str, float]:
    """The figures a decision rule is judged by: weighted- and macro-F1, negative recall and precision."""
    return {"weighted_f1": report["weighted_f1"], "macro_f1": report["macro_f1"],
            "negative_recall": report["negative"]["recall"], "negative_precision": report["negative"]["precision"]}


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable summary of a report."""
    lines = [
        f"n={report['n']}  accuracy={report['accuracy']:.4f}  weighted-F1={report['weighted_f1']:.4f}  "
        f"macro-F1={report['macro_f1']:.4f}"
        + (f"  micro-F1 w/o neutral={report['micro_f1_without_neutral']:.4f}"
           if "micro_f1_without_neutral" in report else "")
        + (f"  ECE={report['ece']:.4f} (uncalibrated {report['ece_uncalibrated']:.4f})" if "ece" in report else ""),
        f"{'label':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for label, c in report["per_class"].items():
        lines.append(f"{label:<12}{c['precision']:>10.3f}{c['recall']:>10.3f}{c['f1']:>10.3f}{c['support']:>9}")
    negative = report.get("negative")
    if negative and negative["labels"]:
        lines.append(f"{'negative':<12}{negative['precision']:>10.3f}{negative['recall']:>10.3f}"
                     f"{negative['f1']:>10.3f}{negative['support']:>9}  (any of {', '.join(negative['labels'])})")
    return "\n".join(lines)
