"""Making the minority classes count while the probabilities stay honest.

- **Class weights** for training (`class_weights`): w_c = (N / (K · n_c)) ** power from the training
  label counts (power 1: inverse frequency, 0.5: its square root, 0: none). A class-weighted
  cross-entropy is minimised by q(c | x) ∝ w_c · p(c | x), so serving divides the model's label
  probabilities by w and renormalises (`undo_class_weights`): the probabilities are again
  estimates of p(c | x), which the dev-fitted temperature then calibrates.
- **The decision rule** (`fit_decision_weights`): the label is argmax_c p_c · d_c, with d fitted on
  dev to maximise an objective (`DECISION_OBJECTIVES`, chosen per label set): by default the mean of
  weighted-F1, macro-F1 and, where the label set has negative labels, the F1 of "is this turn
  negative?" (what the supervisors' page and alerts act on); or micro-F1 without neutral, where
  that is what a user's data is judged by (DailyDialog). The probabilities served stay the
  calibrated p, only the choice of label moves. d = 1 for every class is plain argmax.
- **Its honest figures** (`held_out_choices`): each dev example labelled by weights fitted on the
  other folds, so the dev figures of a fitted rule are not scored on the turns it was fitted to.
- **Fitting what serving applies** (`fit_serving`): the temperature on dev, then the decision
  weights on the calibrated probabilities, and the rule's held-out labels: one function for
  training's epoch ends and for `dialoguellm calibrate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from pipeline.core.errors import ConfigError
from pipeline.core.labels import LABEL_SETS, NEUTRAL

DEFAULT_OBJECTIVE = "balanced"
HELD_OUT_FOLDS = 5
DECISION_OBJECTIVES = {
    DEFAULT_OBJECTIVE: "the mean of weighted-F1, macro-F1 and, where the label set has negative labels, negative-F1",
    "micro_f1_without_neutral": "micro-F1 over the emotions, neutral left out (DailyDialog's usual metric)",
}


def check_objectives(objectives: Mapping[str, str], fitted: bool, where: str, rule: str) -> None:
    """Refuse, naming the field `where`, a label set or decision objective that does not exist, or
    objectives where the decision rule (the field `rule`) is not fitted."""
    if objectives and not fitted:
        raise ConfigError(f"{where}: applies to {rule} fitted only")
    for label_set, objective in objectives.items():
        if label_set not in LABEL_SETS:
            raise ConfigError(f"{where}: unknown label set {label_set!r} (known: {', '.join(sorted(LABEL_SETS))})")
        if objective not in DECISION_OBJECTIVES:
            raise ConfigError(f"{where}: {objective!r} (for {label_set}) is not one of {', '.join(DECISION_OBJECTIVES)}")


def objective_for(objectives: Mapping[str, str] | None, label_set: str) -> str:
    """The decision objective `objectives` names for `label_set` (DEFAULT_OBJECTIVE where none)."""
    return (objectives or {}).get(label_set, DEFAULT_OBJECTIVE)


def class_weights(counts: Mapping[str, int], labels: Sequence[str], power: float) -> dict[str, float]:
    """w_c = (N / (K · n_c)) ** power for each label (a label never seen counts once)."""
    total = sum(counts.get(label, 0) for label in labels)
    return {label: (total / (len(labels) * max(1, counts.get(label, 0)))) ** power for label in labels}


def undo_class_weights(probs: Mapping[str, float], weights: Mapping[str, float]) -> dict[str, float]:
    """p ∝ q / w: the probabilities of a model trained with class weights `weights`, unweighted."""
    if not weights:
        return dict(probs)
    scaled = {label: p / weights.get(label, 1.0) for label, p in probs.items()}
    norm = sum(scaled.values()) or 1.0
    return {label: v / norm for label, v in scaled.items()}


def decide(probs: Mapping[str, float], weights: Mapping[str, float] | None) -> str:
    """argmax p · w (plain argmax without weights)."""
    w = weights or {}
    return max(probs, key=lambda label: probs[label] * w.get(label, 1.0))


def f1_scores(gold: Sequence[int], predicted: Sequence[int], n: int) -> tuple[float, float]:
    """(weighted-F1, macro-F1) over labels 0..n-1, as scikit-learn computes them (zero_division 0)."""
    import numpy as np

    g, p = np.asarray(gold), np.asarray(predicted)
    f1 = np.zeros(n)
    support = np.bincount(g, minlength=n)[:n]
    for c in range(n):
        tp = np.sum((g == c) & (p == c))
        denominator = np.sum(g == c) + np.sum(p == c)
        f1[c] = 2 * tp / denominator if denominator else 0.0
    weighted = float((f1 * support).sum() / support.sum()) if support.sum() else 0.0
    return weighted, float(f1.mean())


def fit_decision_weights(probs: Sequence[Sequence[float]], gold: Sequence[int], labels: Sequence[str],
                         negative: Sequence[str] = (), objective: str = DEFAULT_OBJECTIVE,
                         rounds: int = 4) -> dict[str, float]:
    """Decision weights d (first label fixed at 1) maximising `objective` (see DECISION_OBJECTIVES;
    `negative` names the labels of negative-F1) of argmax p · d on these examples: coordinate
    ascent over a grid of log d."""
    import numpy as np

    if objective not in DECISION_OBJECTIVES:
        raise ValueError(f"objective: {objective!r} is not one of {', '.join(DECISION_OBJECTIVES)}")
    p = np.asarray(probs, dtype=np.float64)
    g = np.asarray(gold)
    n = len(labels)
    is_negative = np.array([label in set(negative) for label in labels])
    gold_negative = is_negative[g] if is_negative.any() else None
    is_emotion = np.array([label != NEUTRAL for label in labels])
    log_d = np.zeros(n)
    grid = np.linspace(-2.5, 2.5, 51)

    def score(ld: np.ndarray) -> float:
        chosen = np.argmax(np.log(np.clip(p, 1e-300, None)) + ld, axis=1)
        if objective == "micro_f1_without_neutral":
            right = np.sum((chosen == g) & is_emotion[g])
            denominator = np.sum(is_emotion[g]) + np.sum(is_emotion[chosen])
            return 2 * right / denominator if denominator else 0.0
        w, m = f1_scores(g, chosen, n)
        if gold_negative is None:
            return (w + m) / 2
        predicted_negative = is_negative[chosen]
        both = np.sum(gold_negative & predicted_negative)
        denominator = np.sum(gold_negative) + np.sum(predicted_negative)
        return (w + m + (2 * both / denominator if denominator else 0.0)) / 3

    best = score(log_d)
    for _ in range(rounds):
        improved = False
        for c in range(1, n):
            for value in grid:
                trial = log_d.copy()
                trial[c] = value
                s = score(trial)
                if s > best + 1e-9:
                    best, log_d, improved = s, trial, True
        if not improved:
            break
    return {label: float(np.exp(v)) for label, v in zip(labels, log_d, strict=True)}


def held_out_choices(probs: Sequence[Sequence[float]], gold: Sequence[int], labels: Sequence[str],
                     negative: Sequence[str] = (), objective: str = DEFAULT_OBJECTIVE, folds: int = HELD_OUT_FOLDS
                     ) -> list[int]:
    """The label index each example gets from decision weights fitted without it: the examples cut
    into `folds` contiguous parts (contiguous, so a conversation's turns mostly stay in one part),
    each part labelled by weights fitted on the others. Their figures estimate what the rule
    fitted on all of them scores on new conversations, which its figures on these examples
    overstate."""
    import numpy as np

    p = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None))
    chosen = np.zeros(len(p), dtype=int)
    for part in np.array_split(np.arange(len(p)), max(1, min(folds, len(p)))):
        rest = np.setdiff1d(np.arange(len(p)), part)
        weights = fit_decision_weights([probs[i] for i in rest], [gold[i] for i in rest], labels, negative,
                                       objective) if len(rest) else {}
        log_d = np.log([weights.get(label, 1.0) for label in labels])
        chosen[part] = np.argmax(p[part] + log_d, axis=1)
    return chosen.tolist()


class FittedServing(NamedTuple):
    """What `fit_serving` fits on dev, and what it scores there."""

    temperature: float
    decision: dict[str, float] | None  # the decision weights; None: plain argmax
    served: list[dict[str, float]]  # the calibrated probabilities
    held_out: list[int] | None  # each example's label index under the rule fitted without it (`held_out_choices`)


def fit_serving(probs: Sequence[Sequence[float]], gold: Sequence[int], labels: Sequence[str],
                negative: Sequence[str] = (), fit_decision: bool = True, objective: str = DEFAULT_OBJECTIVE
                ) -> FittedServing:
    """What serving applies, fitted on dev from the model's (class-weight-free) label probabilities:
    the temperature, the decision weights on the calibrated probabilities for `objective` (None:
    plain argmax), those calibrated probabilities and, with decision weights, the labels the rule
    gives each example held out (the figures to judge it by: its own on these examples flatter it)."""
    from pipeline.core.calibration import apply_temperature, fit_temperature

    temperature = fit_temperature(probs, gold)
    served = [apply_temperature(dict(zip(labels, row, strict=True)), temperature) for row in probs]
    if not fit_decision:
        return FittedServing(temperature, None, served, None)
    rows = [[q[x] for x in labels] for q in served]
    return FittedServing(temperature, fit_decision_weights(rows, gold, labels, negative, objective), served,
                         held_out_choices(rows, gold, labels, negative, objective))
