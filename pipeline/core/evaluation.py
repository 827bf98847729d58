"""Evaluation: label every gold-labelled turn of a split, score it, write the report and a plot."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.core.calibration import apply_temperature, expected_calibration_error
from pipeline.core.labels import get_label_set
from pipeline.core.metrics import classification_report
from pipeline.core.predictions import LabelRequest, Prediction
from pipeline.core.turns import Conversation


class Classifier(Protocol):
    def predict(self, requests: Sequence[LabelRequest]) -> list[Prediction]: ...


def label_requests(
    conversations: Sequence[Conversation], context_turns: int, adapter: str | None = None,
    limit: int | None = None,
) -> list[LabelRequest]:
    """One request per gold-labelled turn, with the turns before it as context, in corpus order."""
    requests = []
    for conv in conversations:
        for i, turn in enumerate(conv.turns):
            if turn.label is not None:
                requests.append(LabelRequest(turn, conv.context_of(i, context_turns), conv.label_set, adapter))
                if limit is not None and len(requests) >= limit:
                    return requests
    return requests


def evaluate(
    classifier: Classifier,
    requests: Sequence[LabelRequest],
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
    temperature: float = 1.0,
) -> tuple[dict[str, Any], list[Prediction]]:
    """Classify `requests` in batches and compute the report against their gold labels.

    `ece` is the calibration error of the predictions as served; `ece_uncalibrated` that of the
    same probabilities before the classifier's `temperature` was applied.
    """
    if not requests:
        raise ValueError("nothing to evaluate: no labelled turns")
    label_set = get_label_set(requests[0].label_set)
    predictions: list[Prediction] = []
    for start in range(0, len(requests), batch_size):
        batch = requests[start : start + batch_size]
        predictions.extend(classifier.predict(batch))
        if progress:
            progress(len(batch))
    gold = [r.turn.label or "" for r in requests]
    report = classification_report(gold, [p.label for p in predictions], label_set)
    correct = [p.label == g for p, g in zip(predictions, gold, strict=True)]
    report["ece"] = expected_calibration_error([p.confidence for p in predictions], correct)
    raw = [apply_temperature(p.probs, 1 / temperature) for p in predictions]
    report["ece_uncalibrated"] = expected_calibration_error([r[p.label] for r, p in zip(raw, predictions, strict=True)],
                                                            correct)
    report["temperature"] = temperature
    return report, predictions


def evaluate_and_report(classifier: Classifier, requests: Sequence[LabelRequest], report_path: str | Path,
                        batch_size: int = 256, temperature: float = 1.0, **details: Any) -> dict[str, Any]:
    """Label `requests` with a progress bar (ETA), write the report and its plot, print them."""
    import sys
    import time

    from tqdm import tqdm

    from pipeline.core.metrics import format_report

    start = time.perf_counter()
    with tqdm(total=len(requests), desc="labelling", unit="turn", file=sys.stderr) as bar:
        report, _ = evaluate(classifier, requests, batch_size, bar.update, temperature)
    report.update(turns_per_s=round(len(requests) / (time.perf_counter() - start), 1), **details)
    png = write_report(report, report_path)
    print(format_report(report))
    print(f"report: {report_path}  plot: {png}")
    return report


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write `report` as JSON at `path` and its confusion matrix as a PNG beside it; returns the PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    png = path.with_suffix(".png")
    plot_confusion_matrix(report, png)
    return png


def plot_confusion_matrix(report: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = report["labels"]
    matrix = np.array(report["confusion_matrix"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(labels), 0.8 + 0.8 * len(labels)))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    title = f"{report.get('model', '')} {report.get('adapter') or ''}".strip()
    ax.set_title(f"weighted-F1 {report['weighted_f1']:.3f}  n={report['n']}\n{title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
