"""The `dialoguellm` command: one subcommand per flow, errors as one line and a non-zero exit.

`COMMANDS` is the whole map: each name, its help, the function that declares its flags and its
handler. A handler calls `preflight(args)` (every pre-start check, in one place), gets typed
configs back and hands them to the flow; the argparse namespace never leaves this package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pipeline.cli import alerts, bench, evaluate, label, stream, train, video, watch
from pipeline.core import envs
from pipeline.core.errors import DialogueLLMError

EXIT_USAGE = 2

Flags = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, tuple[str, Flags, Handler | None]] = {
    "eval": ("evaluate on a dataset split; write a JSON report and a PNG", evaluate.eval_flags, evaluate.run_eval),
    "train": ("fine-tune a LoRA adapter with Ray Train (see training/configs/)", train.train_flags, train.run_train),
    "serve": ("label turns from a Redis stream until SIGTERM", stream.serve_flags, stream.run_serve),
    "push": ("send a conversation file (MELD CSV or JSONL) turn by turn to the input stream",
             stream.push_flags, stream.run_push),
    "tail": ("print labels from the output stream as they arrive", stream.tail_flags, stream.run_tail),
    "demo": ("the streaming worker end to end: push a MELD test conversation, print its labels as they arrive, stop",
             stream.demo_flags, stream.run_demo),
    "replay": ("put dead-lettered entries back on the input stream (after a fix)", stream.replay_flags,
               stream.run_replay),
    "describe": ("describe a video segment in words (as the prompt gets it)", video.describe_flags,
                 video.run_describe),
    "label": ("label a manifest of turns (CSV, JSONL, Parquet; MELD's CSV as it is) into a Parquet folder, "
              "with Ray Data; rerun to resume", label.label_flags, label.run_label),
    "alerts": ("evaluate escalation rules over the labels stream and write alerts, until SIGTERM",
               alerts.alerts_flags, alerts.run_alerts),
    "watch": ("a live web page of the conversations being labelled, riskiest first, for supervisors",
              watch.watch_flags, watch.run_watch),
    # Each benchmark declares its own handler (bench engine | train | stream | label | video).
    "bench": ("benchmarks: our path and its baseline side by side", bench.bench_flags, None),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dialoguellm", description="Emotion recognition in conversation with a LoRA-tuned LLM."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, declare, handler) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        declare(p)
        if handler is not None:
            p.set_defaults(run=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # vLLM logs every engine step detail at INFO on stdout; our commands print their own results.
    envs.set_default("VLLM_LOGGING_LEVEL", "WARNING")
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
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
        print(f"dialoguellm: error: {describe_error(e, getattr(args, 'redis_url', None))}", file=sys.stderr)
        return 1
