"""`dialoguellm gate`: is a new adapter better on the users' own turns, and not worse elsewhere?

Each adapter is evaluated as it would serve, on the same held-back turns: the corrections' dev
part (`corrections export`'s dev.jsonl) and the guard sets (MELD dev by default). One engine at a
time serves one adapter alone, with the prompt it was trained with (unless the engine flags set
one), merged into the model on a CPU as `serve` does: the figures are those its users would get.
The decision is `pipeline.core.gate.decide`; exit 0 only when it passes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pipeline.cli.configs import GateConfig
from pipeline.cli.preflight import preflight
from pipeline.core.errors import DataError

EXIT_FAILED = 1


def run_gate(config: GateConfig) -> int:
    from pipeline.core.corrections import DEV_FILE, export_label_set
    from pipeline.core.datasets import load_dataset
    from pipeline.core.evaluation import evaluate, label_requests
    from pipeline.core.gate import CORRECTIONS, GUARD, GateSet, decide, format_table
    from pipeline.core.prompter import Prompter
    from workers.model_store import resolve_model

    (candidate, candidate_path), (against, against_path) = config.adapters()
    adapters = {candidate: candidate_path, **({against: against_path} if against_path else {})}
    preflight(dataclasses.replace(config.engine, adapters=adapters, default_adapter=candidate,
                                  use_default_adapter=False))  # both folders, before anything loads
    served = {name: dataclasses.replace(config.engine, adapters={name: path} if path else {},
                                        default_adapter=name if path else None, use_default_adapter=False,
                                        enable_lora=False).resolved()
              for name, path in ((candidate, candidate_path), (against, against_path))}

    folder = Path(config.corrections)
    label_set = export_label_set(folder)
    if not (folder / DEV_FILE).is_file() or label_set is None:
        raise DataError(f"corrections: {folder} is not a folder `dialoguellm corrections export` wrote "
                        f"(no {DEV_FILE} and manifest.json)")
    wanted = [(f"corrections {folder.name}/{DEV_FILE}", CORRECTIONS,
               load_dataset("jsonl", "dev", folder / DEV_FILE, label_set))]
    for spec in config.sets:
        dataset, split, path = spec
        set_label_set = export_label_set(path) if dataset == "jsonl" and path else None
        wanted.append((f"{dataset} {split}", GUARD, load_dataset(dataset, split, path or config.data, set_label_set)))

    # Each adapter's requests, with its own context; a prompt over the window fails here, before an engine starts.
    asked: dict[str, list] = {}
    for name, engine_config in served.items():
        prompter = Prompter.from_model(resolve_model(engine_config.model), engine_config.context_turns,
                                       engine_config.max_model_len, engine_config.prompt, engine_config.window_step)
        asked[name] = []
        for set_name, role, conversations in wanted:
            requests = label_requests(conversations, engine_config.context_turns, limit=config.limit)
            if not requests:
                raise DataError(f"{set_name}: no labelled turns to evaluate" + (
                    " (too few corrected conversations for the dev share?)" if role == CORRECTIONS else ""))
            prompter.build_all(requests)
            asked[name].append(requests)

    import sys

    from tqdm import tqdm

    from workers.engine import EmotionEngine

    reports: dict[str, list[dict]] = {}
    for name, engine_config in served.items():
        engine = EmotionEngine(engine_config)
        try:
            with tqdm(total=sum(map(len, asked[name])), desc=f"gate: {name}", unit="turn", file=sys.stderr) as bar:
                reports[name] = [evaluate(engine, requests, config.batch_size, bar.update,
                                          temperature=engine.temperature(engine.adapter_name(None), requests[0].label_set))[0]
                                 for requests in asked[name]]
        finally:
            engine.close()
    sets = [GateSet(set_name, role, reports[candidate][k], reports[against][k])
            for k, (set_name, role, _) in enumerate(wanted)]
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
