"""`dialoguellm gate`: is a new adapter better on the users' own turns, and not worse elsewhere?

Each adapter is evaluated as it would serve, on the same held-back turns: the corrections' dev
part (`corrections export`'s dev.jsonl) and the guard sets (MELD dev by default). One engine at a
time serves one adapter alone, with the prompt it was trained with (unless the engine flags set
one), merged into the model on a CPU as `serve` does: the figures are those its users would get.
The decision is `pipeline.core.gate.decide`; exit 0 only when it passes.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.cli.configs import GateConfig
from pipeline.cli.preflight import preflight
from pipeline.core.errors import DataError

EXIT_FAILED = 1


def run_gate(config: GateConfig) -> int:
    from pipeline.cli.eval_sets import evaluate_served, load_sets, requests_for
    from pipeline.core.corrections import DEV_FILE, export_label_set
    from pipeline.core.datasets import load_dataset
    from pipeline.core.gate import CORRECTIONS, GUARD, GateSet, decide, format_table

    (candidate, candidate_path), (against, against_path) = config.adapters()
    served = {name: config.engine.alone(name, path)
              for name, path in ((candidate, candidate_path), (against, against_path))}
    for engine_config in served.values():
        preflight(engine_config)  # both folders, before anything loads

    folder = Path(config.corrections)
    label_set = export_label_set(folder)
    if not (folder / DEV_FILE).is_file() or label_set is None:
        raise DataError(f"corrections: {folder} is not a folder `dialoguellm corrections export` wrote "
                        f"(no {DEV_FILE} and manifest.json)")
    sets = [(f"corrections {folder.name}/{DEV_FILE}", load_dataset("jsonl", "dev", folder / DEV_FILE, label_set)),
            *load_sets(config.sets, config.data)]
    roles = [CORRECTIONS] + [GUARD] * (len(sets) - 1)
    try:
        asked = {name: requests_for(engine_config, sets, config.limit) for name, engine_config in served.items()}
    except DataError as e:
        if str(e).startswith(sets[0][0]):
            raise DataError(f"{e} (too few corrected conversations for the dev share?)") from None
        raise

    reports = {name: [report for report, _, _ in evaluate_served(engine_config, asked[name], config.batch_size,
                                                                 f"gate: {name}")]
               for name, engine_config in served.items()}
    sets = [GateSet(set_name, role, reports[candidate][k], reports[against][k])
            for k, ((set_name, _), role) in enumerate(zip(sets, roles, strict=True))]
    decision = decide(sets, config.margin, config.metric)
    print(format_table(sets, candidate, against))
    for reason in decision.reasons:
        print(f"  {reason}")
    verdict = "PASSED" if decision.passed else "FAILED"
    print(f"gate {verdict}: {candidate} against {against} (by {config.metric}, margin {config.margin})")
    if config.report:
        Path(config.report).parent.mkdir(parents=True, exist_ok=True)
        Path(config.report).write_text(json.dumps({
            "candidate": {"name": candidate, "path": candidate_path}, "against": {"name": against, "path": against_path},
            "metric": config.metric, "margin": config.margin, "passed": decision.passed, "reasons": decision.reasons,
            "sets": [{"name": s.name, "role": s.role, "candidate": s.candidate, "against": s.against} for s in sets],
        }, indent=2) + "\n", encoding="utf-8")
        print(f"report: {config.report}")
    return 0 if decision.passed else EXIT_FAILED
