"""`dialoguellm label`: batch labelling of a manifest with Ray Data."""

from __future__ import annotations

import argparse
import json

from pipeline.cli import configs, flags
from pipeline.cli.preflight import preflight
from workers.engine_pool import PoolConfig
from workers.video.actors import VideoPoolConfig


def label_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="one row per turn (see the README)")
    p.add_argument("--out", required=True, help="output folder, e.g. labels.parquet")
    p.add_argument("--label-set", default="meld", help="labels to choose from (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="rows per engine batch")
    p.add_argument("--rows-per-file", type=int, default=256, help="rows per Parquet file (what a resume redoes)")
    p.add_argument("--cache-dir", help="description cache (default: $DIALOGUELLM_HOME/descriptions)")
    flags.json_flag(p)
    g = p.add_argument_group("pool")
    for name in ("engines", "gpus_per_engine", "ray_address"):
        flags.field_flag(g, PoolConfig, name)
    flags.field_flag(g, VideoPoolConfig, "actors", "--video-actors", dest="video_actors")
    flags.model_flags(p)
    flags.video_flags(p)  # --video-root: the manifest's relative video paths (MELD's clips) are under the first


def run_label(args: argparse.Namespace) -> int:
    from pipeline.core.metrics import format_report
    from pipeline.labelling.job import run_label_job

    checked = preflight(args)
    job = configs.label_job(args)
    summary = run_label_job(job, checked.engine)
    report = summary.pop("report", None)
    print(f"{job.out}: {summary['rows']} rows, {summary['labelled_now']} labelled now, "
          f"{summary['already_done']} done before")
    if report:
        print(format_report(report))
        summary.update(weighted_f1=report["weighted_f1"], accuracy=report["accuracy"])
    if args.json:
        print(json.dumps(summary))
    return 0
