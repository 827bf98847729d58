"""`dialoguellm calibrate`: refit what serving applies to an adapter on dev sets, without retraining.

The adapter is served alone (merged on a CPU, with the prompt it was trained with), each dev turn
labelled once; the probabilities before its temperature are recovered from those served, and per
label set the temperature and the decision weights are fitted again (`pipeline.core.decision.
fit_serving`, the function training's epoch ends use). The result is a copy of the adapter with a
new `dialoguellm_adapter.json`: a new version, to be served under a new name.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from pipeline.cli.configs import CalibrateConfig
from pipeline.cli.preflight import preflight
from pipeline.core.decision import HELD_OUT_FOLDS
from pipeline.core.metrics import headline


def run_calibrate(config: CalibrateConfig) -> int:
    from pipeline.cli.eval_sets import evaluate_served, load_sets, requests_for
    from workers.adapters import read_adapter_meta, write_adapter_meta

    name, path = config.named_adapter()
    engine_config = config.engine.alone(name, path)
    preflight(engine_config)
    sets = load_sets(config.sets, config.data)
    asked = requests_for(engine_config, sets, config.limit)
    served = evaluate_served(engine_config, asked, config.batch_size, f"calibrate: {name}")

    meta = read_adapter_meta(path)
    fitted, figures = refit(sets, asked, served, config.decision_rule == "fitted", config.objectives)
    temperatures = {**meta.temperatures, **{s: t for s, (t, _) in fitted.items()}}
    decisions = {s: d for s, d in meta.decision_weights.items() if s not in fitted}
    decisions.update({s: d for s, (_, d) in fitted.items() if d is not None})

    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(path, out)
    write_adapter_meta(out, dataclasses.replace(meta, temperatures=temperatures, decision_weights=decisions))
    print(format_figures(figures))
    report = Path(config.report) if config.report else out / "calibration.json"
    report.write_text(json.dumps({"adapter": {"name": name, "path": path}, "out": str(out),
                                  "decision_rule": config.decision_rule, "objectives": config.objectives,
                                  "sets": figures,
                                  "temperatures": temperatures, "decision_weights": decisions},
                                 indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} (serve it under a new name); report: {report}")
    return 0


def refit(sets: list[tuple[str, Any]], asked: list[list[Any]], served: list[tuple[dict, list, float]],
          fit_decision: bool, objectives: dict[str, str] | None = None
          ) -> tuple[dict[str, tuple[float, dict | None]], list[dict[str, Any]]]:
    """Per label set (its sets pooled): the refitted temperature and decision weights (for its
    objective in `objectives`, balanced where it names none); per set the figures as served before
    and as they are with the refitted rule."""
    from pipeline.core.calibration import apply_temperature, expected_calibration_error
    from pipeline.core.decision import decide, fit_serving, objective_for
    from pipeline.core.labels import get_label_set, negative_labels
    from pipeline.core.metrics import classification_report

    pooled: dict[str, tuple[list, list]] = {}
    raw_per_set = []
    for requests, (_, predictions, temperature) in zip(asked, served, strict=True):
        label_set = get_label_set(requests[0].label_set)
        # The engine served p ** (1 / T), renormalised; the T-th power, renormalised, gives p back.
        raw = [apply_temperature(p.probs, 1 / temperature) for p in predictions]
        raw_per_set.append(raw)
        rows, gold = pooled.setdefault(label_set.name, ([], []))
        rows.extend([r[x] for x in label_set.labels] for r in raw)
        gold.extend(label_set.index(q.turn.label) for q in requests)
    fitted, held_out = {}, {}
    for name, (rows, gold) in pooled.items():
        label_set = get_label_set(name)
        temperature, decision, _, choices = fit_serving(rows, gold, label_set.labels, negative_labels(label_set),
                                                        fit_decision, objective_for(objectives, name))
        fitted[name] = (temperature, decision)
        if choices is not None:
            # The refitted rule's figures are scored on the turns it was fitted to; these are not.
            held_out[name] = iter(choices)  # the pooled sets' turns, read back set by set below
    figures = []
    for (set_name, _), requests, (before, _, _), raw in zip(sets, asked, served, raw_per_set, strict=True):
        label_set = get_label_set(requests[0].label_set)
        temperature, decision = fitted[label_set.name]
        calibrated = [apply_temperature(r, temperature) for r in raw]
        chosen = [decide(p, decision) for p in calibrated]
        gold = [q.turn.label for q in requests]
        after = classification_report(gold, chosen, label_set)
        after["ece"] = expected_calibration_error([p[c] for p, c in zip(calibrated, chosen, strict=True)],
                                                  [c == g for c, g in zip(chosen, gold, strict=True)])
        after["temperature"] = temperature
        figure = {"set": set_name, "n": len(requests), "before": _summary(before), "after": _summary(after)}
        if label_set.name in held_out:
            choices = [label_set.labels[next(held_out[label_set.name])] for _ in requests]
            figure["held_out"] = headline(classification_report(gold, choices, label_set))
        figures.append(figure)
    return fitted, figures


def _summary(report: dict[str, Any]) -> dict[str, float]:
    return {**headline(report), "micro_f1_without_neutral": report["micro_f1_without_neutral"],
            "ece": report["ece"], "temperature": report["temperature"]}


def format_figures(figures: list[dict[str, Any]]) -> str:
    """A table: each set's figures as served before and with the refitted rule."""
    keys = {"weighted_f1": "wF1", "macro_f1": "mF1", "micro_f1_without_neutral": "µF1-n",
            "negative_recall": "neg R", "negative_precision": "neg P", "ece": "ECE"}
    lines = [f"{'set':<16}{'n':>6}" + "".join(f"{f'{short} {when}':>14}" for short in keys.values()
                                              for when in ("before", "after"))]
    for f in figures:
        lines.append(f"{f['set']:<16}{f['n']:>6}" + "".join(f"{f[when][k]:>14.3f}" for k in keys
                                                            for when in ("before", "after")))
    for f in figures:
        if "held_out" in f:
            lines.append(f"{f['set']}, the refitted rule held out ({HELD_OUT_FOLDS} folds, each labelled by weights "
                         f"fitted on the others): " + ", ".join(f"{keys[k]} {v:.3f}" for k, v in f["held_out"].items()))
    return "\n".join(lines)
