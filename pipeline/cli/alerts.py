"""`dialoguellm alerts`: escalation rules over the labels stream, alerts to a stream, until SIGTERM."""

from __future__ import annotations

from pipeline.cli.configs import AlertsRunConfig
from pipeline.cli.preflight import preflight


def run_alerts_command(config: AlertsRunConfig) -> int:
    from pipeline.alerts.consumer import alerts_until_signal
    from pipeline.alerts.rules import load_rules
    from pipeline.core.logs import setup_logging

    setup_logging(config.log_format)
    rules = load_rules(config.rules)
    preflight(config)
    alerts_until_signal(config.alerts, rules)
    return 0
