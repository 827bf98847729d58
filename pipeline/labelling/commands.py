"""`dialoguellm label`: batch labelling on the command line."""

from __future__ import annotations

import argparse
import json

from pipeline.cli import engine_arguments, engine_config
from pipeline.video_commands import decode_config, describer_options, video_arguments


def _label(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="label a manifest of turns (CSV, JSONL, Parquet; MELD's CSV as it is) "
                                     "into a Parquet folder, with Ray Data; rerun to resume")
    p.add_argument("--manifest", required=True, help="one row per turn (see the README)")
    p.add_argument("--video-root", help="folder the manifest's video paths (MELD: dia{D}_utt{U}.mp4) are under")
    p.add_argument("--out", required=True, help="output folder, e.g. labels.parquet")
    p.add_argument("--label-set", default="meld", help="labels to choose from (default: %(default)s)")
    p.add_argument("--engines", type=int, default=1, help="engine actors (one GPU each on GPU nodes)")
    p.add_argument("--video-actors", type=int, default=1, help="video decoder/describer actors")
    p.add_argument("--batch-size", type=int, default=256, help="rows per engine batch")
    p.add_argument("--rows-per-file", type=int, default=256, help="rows per Parquet file (what a resume redoes)")
    p.add_argument("--cache-dir", help="description cache (default: $DIALOGUELLM_HOME/descriptions)")
    p.add_argument("--gpus-per-engine", type=float, help="default: 1 when the Ray cluster has GPUs, else 0")
    p.add_argument("--ray-address", help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the counts and figures")
    engine_arguments(p)
    video_arguments(p)
    p.set_defaults(run=run_label)


def label_job(args: argparse.Namespace):
    from pipeline.labelling.job import LabelJob

    return LabelJob(
        manifest=args.manifest, out=args.out, video_root=args.video_root, label_set=args.label_set,
        describer=args.describer, decode=decode_config(args), describer_options=describer_options(args),
        cache_dir=args.cache_dir, engines=args.engines, video_actors=args.video_actors,
        batch_size=args.batch_size, rows_per_file=args.rows_per_file, gpus_per_engine=args.gpus_per_engine,
        ray_address=args.ray_address,
    )


def run_label(args: argparse.Namespace) -> int:
    from pipeline.labelling.job import run_label_job
    from pipeline.metrics import format_report
    from workers.adapters import check_adapter

    job = label_job(args)
    config = engine_config(args).with_default_adapter()
    for name, path in config.adapters.items():
        check_adapter(name, path, config.max_lora_rank)
    summary = run_label_job(job, config)
    report = summary.pop("report", None)
    print(f"{job.out}: {summary['rows']} rows, {summary['labelled_now']} labelled now, "
          f"{summary['already_done']} done before")
    if report:
        print(format_report(report))
        summary.update(weighted_f1=report["weighted_f1"], accuracy=report["accuracy"])
    if args.json:
        print(json.dumps(summary))
    return 0


REGISTRY = (_label,)
