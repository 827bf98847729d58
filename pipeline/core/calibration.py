"""Confidence calibration: one temperature per label set, and the expected calibration error.

The engine's label probabilities are a softmax over label scores; dividing the scores by a
temperature T fitted on dev (minimum negative log-likelihood) makes the confidence of the chosen
label match how often it is right. On probabilities that is p ** (1 / T), renormalised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

ECE_BINS = 15


def fit_temperature(probs: Sequence[Sequence[float]], gold: Sequence[int], low: float = 0.05,
                    high: float = 20.0, iterations: int = 80) -> float:
    """The temperature minimising the dev negative log-likelihood (golden-section search on log T)."""
    import numpy as np

    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None))
    index = np.asarray(gold)
    if len(index) == 0:
        raise ValueError("no examples to fit a temperature on")

    def nll(log_t: float) -> float:
        scaled = logp / math.exp(log_t)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        norm = np.log(np.exp(scaled).sum(axis=1))
        return float((norm - scaled[np.arange(len(index)), index]).mean())

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return math.exp((a + b) / 2)


def apply_temperature(probs: Mapping[str, float], temperature: float) -> dict[str, float]:
    """Probabilities rescaled as softmax(scores / T); T = 1 leaves them as they are."""
    if temperature == 1.0:
        return dict(probs)
    logs = {label: math.log(max(p, 1e-300)) / temperature for label, p in probs.items()}
    top = max(logs.values())
    weights = {label: math.exp(v - top) for label, v in logs.items()}
    norm = sum(weights.values())
    return {label: w / norm for label, w in weights.items()}


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """ECE over equal-width confidence bins: the support-weighted gap between confidence and accuracy."""
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} outcomes")
    if not confidences:
        raise ValueError("no predictions")
    totals = [[0, 0.0, 0] for _ in range(bins)]  # count, confidence sum, correct count
    for confidence, ok in zip(confidences, correct, strict=True):
        b = min(bins - 1, int(confidence * bins))
        totals[b][0] += 1
        totals[b][1] += confidence
        totals[b][2] += int(ok)
    return sum(abs(c_sum - hits) for n, c_sum, hits in totals if n) / len(confidences)
