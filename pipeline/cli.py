"""The `dialoguellm` command: one subcommand per flow, errors as one line and a non-zero exit."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pipeline.errors import DialogueLLMError

EXIT_USAGE = 2


def engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every command that runs the model shares."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="model folder or hub id (default: SmolLM2-135M-Instruct)")
    group.add_argument("--adapter", action="append", metavar="NAME=PATH",
                       help="a PEFT LoRA adapter folder; repeat for several, the first is used by default "
                            "(default: the shipped adapter with the default model)")
    group.add_argument("--no-adapter", action="store_true", help="serve the bare model")
    group.add_argument("--decoding", choices=("scoring", "choice"), default="scoring",
                       help="label scoring (one forward pass, default) or constrained generation")
    group.add_argument("--context", type=int, default=2, metavar="Z", help="previous turns in the prompt")
    group.add_argument("--max-model-len", type=int, default=512, help="context window in tokens")
    group.add_argument("--max-lora-rank", type=int, default=16)
    group.add_argument("--kv-cache-gib", type=float, default=2.0, help="CPU KV cache size")


def engine_config(args: argparse.Namespace):
    """The validated `EngineConfig` from parsed flags."""
    from workers.engine_config import EngineConfig, parse_adapter_specs

    adapters = parse_adapter_specs(args.adapter)
    return EngineConfig(
        model=args.model,
        adapters=adapters,
        default_adapter=next(iter(adapters), None),
        decoding=args.decoding,
        context_turns=args.context,
        max_model_len=args.max_model_len,
        max_lora_rank=args.max_lora_rank,
        kv_cache_gib=args.kv_cache_gib,
        use_default_adapter=not args.no_adapter,
    )


def build_parser() -> argparse.ArgumentParser:
    from pipeline import commands

    parser = argparse.ArgumentParser(
        prog="dialoguellm", description="Emotion recognition in conversation with a LoRA-tuned LLM."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in commands.REGISTRY:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # vLLM logs every engine step detail at INFO on stdout; our commands print their own results.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except DialogueLLMError as e:
        print(f"dialoguellm: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        if not type(e).__module__.startswith("redis."):
            raise
        from pipeline.stream.redis_checks import describe_error

        # A Redis reply error while running (a key replaced, memory full): one line, no password.
        print(f"dialoguellm: error: {describe_error(e, getattr(args, 'redis', None))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dialoguellm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
