"""`dialoguellm label`: batch labelling of a manifest with Ray Data."""

from __future__ import annotations

import json

from pipeline.cli.configs import LabelConfig
from pipeline.cli.preflight import preflight


def run_label(config: LabelConfig) -> int:
    from pipeline.core.metrics import format_report
    from pipeline.labelling.job import run_label_job

    preflight(config)
    job = config.job
    summary = run_label_job(job, config.engine)
    report = summary.pop("report", None)
    context = f", {summary['context_only']} context only (speakers --label-speakers leaves out)" \
        if summary.get("context_only") else ""
    print(f"{job.out}: {summary['rows']} rows, {summary['labelled_now']} labelled now{context}, "
          f"{summary['already_done']} done before")
    if report:
        print(format_report(report))
        summary.update(weighted_f1=report["weighted_f1"], accuracy=report["accuracy"])
    if config.json:
        print(json.dumps(summary))
    return 0
