"""`dialoguellm train`: LoRA fine-tuning with Ray Train from a YAML config."""

from __future__ import annotations

import argparse
import json


def train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML training config (see training/configs/)")
    p.add_argument("--storage", help="Ray Train storage path (default: beside output_dir)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue exactly from a step checkpoint (<storage>/<run>/local-checkpoints/last-step)")
    p.add_argument("--overwrite", action="store_true", help="replace an output_dir this command did not write")


def run_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.train import fit

    summary = fit(load_config(args.config), args.storage, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps(summary))
    return 0
