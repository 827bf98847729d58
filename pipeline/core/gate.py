"""The gate a new adapter passes before it serves (`dialoguellm gate`), pure: given both adapters'
evaluation reports on the same held-back sets, pass only when the candidate is better on the
corrections (the users' own turns) and no more than `margin` worse on every other set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

METRICS = ("weighted_f1", "macro_f1")
CORRECTIONS, GUARD = "corrections", "guard"


@dataclass(frozen=True)
class GateSet:
    """One held-back set, both adapters' reports on it (`classification_report` dicts)."""

    name: str
    role: str  # CORRECTIONS: the candidate must be better; GUARD: at most `margin` worse
    candidate: Mapping[str, Any]
    against: Mapping[str, Any]

    def difference(self, metric: str) -> float:
        return float(self.candidate[metric]) - float(self.against[metric])


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # one line per set, why it passed or failed


def decide(sets: Sequence[GateSet], margin: float, metric: str = "weighted_f1") -> Decision:
    """Pass when, by `metric`, the candidate is strictly better on every corrections set (there must
    be one) and not more than `margin` below the other adapter on every guard set."""
    if metric not in METRICS:
        raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
    if margin < 0:
        raise ValueError(f"margin: must be ≥ 0, got {margin}")
    reasons, passed = [], True
    if not any(s.role == CORRECTIONS for s in sets):
        return Decision(False, ["no corrections set: nothing says the candidate is better on the users' turns"])
    for s in sets:
        delta = s.difference(metric)
        if s.role == CORRECTIONS:
            ok = delta > 0
            reasons.append(f"{s.name}: {metric} {delta:+.4f} ({'better' if ok else 'not better'})")
        elif s.role == GUARD:
            ok = delta >= -margin - 1e-12
            reasons.append(f"{s.name}: {metric} {delta:+.4f} ({'within' if ok else 'beyond'} the margin {margin})")
        else:
            raise ValueError(f"{s.name}: unknown role {s.role!r}")
        passed = passed and ok
    return Decision(passed, reasons)


def format_table(sets: Sequence[GateSet], candidate: str, against: str) -> str:
    """One row per set: turns, both adapters' weighted-F1 and macro-F1, the differences."""
    w = max([len("set"), *(len(s.name) for s in sets)]) + 2
    c = max(10, len(candidate), len(against)) + 5
    head = (f"{'set':<{w}}{'role':<13}{'n':>6}  {'wF1 ' + candidate:>{c}}{'wF1 ' + against:>{c}}{'Δ wF1':>9}"
            f"  {'mF1 ' + candidate:>{c}}{'mF1 ' + against:>{c}}{'Δ mF1':>9}")
    lines = [head, "-" * len(head)]
    for s in sets:
        lines.append(
            f"{s.name:<{w}}{s.role:<13}{int(s.candidate['n']):>6}  {s.candidate['weighted_f1']:>{c}.4f}"
            f"{s.against['weighted_f1']:>{c}.4f}{s.difference('weighted_f1'):>+9.4f}  {s.candidate['macro_f1']:>{c}.4f}"
            f"{s.against['macro_f1']:>{c}.4f}{s.difference('macro_f1'):>+9.4f}")
    return "\n".join(lines)
