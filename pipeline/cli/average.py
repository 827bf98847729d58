"""`dialoguellm average`: one adapter from several of one recipe, their weight updates averaged."""

from __future__ import annotations

import sys

from pipeline.cli.configs import AverageConfig


def run_average(config: AverageConfig) -> int:
    from training.average import RECORD_FILE, average_adapters

    members = config.named_members()
    record = average_adapters(members, config.out, config.rank,
                              progress=lambda line: print(line, file=sys.stderr, flush=True))
    how = "exact" if record["exact"] else f"cut to rank {record['rank']}, at most {record['largest_left_out']:.1%} " \
                                          f"of a module's mean update left out"
    print(f"wrote {config.out}: the mean of {', '.join(name for name, _ in members)}, rank {record['rank']} ({how}); "
          f"record: {config.out}/{RECORD_FILE}")
    print(f"next, fit its temperatures and decision weights: dialoguellm calibrate NAME={config.out} --out DIR")
    return 0
