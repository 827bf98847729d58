"""`dialoguellm alerts`: escalation rules over the labels stream, alerts to a stream, until SIGTERM."""

from __future__ import annotations

import argparse

from pipeline.cli import flags
from pipeline.cli.configs import ALERTS_FIELDS
from pipeline.cli.preflight import preflight


def alerts_flags(p: argparse.ArgumentParser) -> None:
    from pipeline.alerts.config import AlertsConfig

    flags.redis_flag(p)
    p.add_argument("--rules", required=True, metavar="FILE",
                   help="escalation rules (YAML; see the README's 'Alerts' section)")
    g = p.add_argument_group("streams")
    for name in ALERTS_FIELDS:
        flags.field_flag(g, AlertsConfig, name)
    p.add_argument("--log-format", choices=("json", "text"), default="json")


def run_alerts(args: argparse.Namespace) -> int:
    from pipeline.alerts.consumer import alerts_until_signal
    from pipeline.core.logs import setup_logging

    setup_logging(args.log_format)
    checked = preflight(args)
    alerts_until_signal(checked.alerts, checked.rules)
    return 0
