"""The `dialoguellm` command: one subcommand per flow, errors as one line and a non-zero exit.

`COMMANDS` is the whole map: each name, its help, the config dataclass it takes and its handler
(for `bench`, a map of its own). The flags are generated from the config's fields
(`pipeline.core.flags`); a handler gets the typed config, runs `preflight` on it and hands it to
the flow. The argparse namespace never leaves this module.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, Union

from pipeline.cli import (
    adapters,
    alerts,
    average,
    bench,
    calibrate,
    configs,
    evaluate,
    gate,
    label,
    stream,
    train,
    video,
    watch,
)
from pipeline.core.errors import DialogueLLMError
from pipeline.core.flags import add_config_flags, config_from_args
from pipeline.core.logs import quiet_libraries
from pipeline.watch.config import WatchConfig
from training.config import TrainRunConfig

EXIT_USAGE = 2

Command = tuple[str, type, Callable[[Any], int]]
Group = tuple[str, dict[str, Command]]

COMMANDS: dict[str, Union[Command, Group]] = {
    "eval": ("evaluate on a dataset split; write a JSON report and a PNG", configs.EvalConfig, evaluate.run_eval),
    "train": ("fine-tune a LoRA adapter with Ray Train (see training/configs/)", TrainRunConfig,
              train.run_train),
    "gate": ("evaluate a new adapter against the served one on the corrections' dev part and held-back sets; "
             "exit 0 only when it is better on the corrections and at most --margin worse on the rest",
             configs.GateConfig, gate.run_gate),
    "calibrate": ("refit an adapter's temperatures and decision weights on dev sets, without retraining, into "
                  "a new adapter folder", configs.CalibrateConfig, calibrate.run_calibrate),
    "average": ("average adapters of one recipe trained with other seeds into one adapter (their weight "
                "updates averaged, exactly, so serving it merged costs what one costs)", configs.AverageConfig,
                average.run_average),
    "serve": ("label turns from a Redis stream until SIGTERM", configs.ServeConfig, stream.run_serve),
    "push": ("send a conversation file (MELD CSV or JSONL) turn by turn to the input stream", configs.PushConfig,
             stream.run_push),
    "tail": ("print labels from the output stream as they arrive", configs.TailConfig, stream.run_tail),
    "demo": ("the streaming worker end to end: push a MELD test conversation, print its labels as they arrive, stop",
             configs.DemoConfig, stream.run_demo_command),
    "replay": ("put dead-lettered entries back on the input stream (after a fix)", configs.ReplayConfig,
               stream.run_replay),
    "forget": ("delete one conversation's stored texts on request: its context hash and its entries in the input, "
               "dead-letter and corrections streams (--labels: its labels and alerts too)", configs.ForgetConfig,
               stream.run_forget),
    "corrections": ("supervisors' corrections (watch --corrections)", {
        "export": ("each corrected turn with the turns before it as JSONL (train and a held-back dev part, split by "
                   "conversation; texts redacted)", configs.CorrectionsExportConfig, stream.run_corrections_export),
    }),
    "describe": ("describe a video segment in words (as the prompt gets it)", configs.DescribeConfig,
                 video.run_describe),
    "label": ("label a manifest of turns (CSV, JSONL, Parquet; MELD's CSV as it is) into a Parquet folder, "
              "with Ray Data; rerun to resume", configs.LabelConfig, label.run_label),
    "alerts": ("evaluate escalation rules over the labels stream and write alerts, until SIGTERM",
               configs.AlertsRunConfig, alerts.run_alerts_command),
    "watch": ("a live web page of the conversations being labelled, riskiest first, for supervisors",
              WatchConfig, watch.run_watch),
    "adapters": ("roll adapters out to running workers without a restart: load, default (canary), unload, list",
                 adapters.COMMANDS),
    "bench": ("benchmarks: our path and its baseline side by side", bench.BENCHMARKS),
}


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line, like every other error of the command."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"dialoguellm: error: {self.prog}: {message}\n")


def _add(sub: Any, name: str, help_text: str, config: type, handler: Callable[[Any], int]) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    add_config_flags(p, config)
    p.set_defaults(_config=config, _handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dialoguellm", description="Emotion recognition in conversation with a LoRA-tuned LLM."
    )
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's and vLLM's own INFO and WARNING lines (default: ours only)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        if isinstance(entry[1], dict):
            help_text, members = entry
            group = sub.add_parser(name, help=help_text).add_subparsers(dest="member", required=True,
                                                                         metavar=name.upper())
            for member, (member_help, config, handler) in members.items():
                _add(group, member, member_help, config, handler)
        else:
            _add(sub, name, *entry)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries(verbose=args.verbose)
    config = None
    try:
        config = config_from_args(args._config, args)
        return int(args._handler(config) or 0)
    except DialogueLLMError as e:
        print(f"dialoguellm: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dialoguellm: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not type(e).__module__.startswith("redis."):
            raise
        from pipeline.stream.redis_checks import describe_error

        # A Redis reply error while running (a key replaced, memory full): one line, no password.
        print(f"dialoguellm: error: {describe_error(e, _redis_url(config))}", file=sys.stderr)
        return 1


def _redis_url(config: Any) -> str | None:
    from pipeline.cli.preflight import UsesRedis, parts

    return next((p.redis_url for p in parts(config) if isinstance(p, UsesRedis)), None) if config else None
