"""The speaker policy (`--label-speakers`): the one rule, its config errors, and what the shipped files set.

The flows that apply it are tested where they live: the stream worker (tests/test_stream.py), batch
labelling (tests/test_labelling.py), the alerts (tests/test_alerts.py) and the page (tests/test_watch.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser
from pipeline.core.errors import ConfigError
from pipeline.core.speakers import SpeakerPolicy
from pipeline.core.wire import FLAG_CONTEXT_ONLY, LabelMessage
from pipeline.stream.config import StreamConfig

REPO = Path(__file__).resolve().parents[1]
CUSTOMERS = "(?i)^customer$"


def test_without_a_pattern_every_speaker_is_labelled():
    policy = SpeakerPolicy()
    assert policy.everyone and all(policy.labels(s) for s in ("Customer", "Agent", "", "Joey"))
    assert StreamConfig().speakers.everyone


def test_a_pattern_is_searched_in_the_speaker_as_the_alert_rules_do():
    policy = SpeakerPolicy(CUSTOMERS)
    assert not policy.everyone
    assert policy.labels("customer") and policy.labels("Customer") and policy.labels("CUSTOMER")
    assert not policy.labels("agent") and not policy.labels("customer 2") and not policy.labels("")
    assert SpeakerPolicy("cust").labels("the customer")  # re.search: anchor it to match whole names


@pytest.mark.parametrize("value", ["(unclosed", "[a-", "", "  "])
def test_a_bad_pattern_fails_when_the_config_is_built_naming_label_speakers(value):
    from pipeline.labelling.job import LabelJob

    with pytest.raises(ConfigError, match="^label_speakers: "):
        StreamConfig(label_speakers=value)
    with pytest.raises(ConfigError, match="^label_speakers: "):
        LabelJob(manifest="m.csv", out="o.parquet", label_speakers=value)


@pytest.mark.parametrize("command", [["serve"], ["label", "--manifest", "m.csv", "--out", "o.parquet"]])
def test_the_command_refuses_a_bad_pattern_at_start_in_one_line(run_cli, command):
    result = run_cli(*command, "--label-speakers", "(?i)^customer(", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dialoguellm: error: label_speakers: '(?i)^customer(' is not a valid regular expression "
        "(missing ), unterminated subpattern at position 13)"]


def test_a_context_only_label_has_no_label_and_old_readers_can_decode_it():
    message = LabelMessage("c", 1, None, None, {}, None, "m", "1-0", 3.0, None, [FLAG_CONTEXT_ONLY], "Agent")
    again = LabelMessage.decode(message.encode())
    assert again == message and again.context_only and again.label is None and again.probs == {}
    assert not LabelMessage("c", 0, "joy", 0.9, {"joy": 0.9}, None, "m", "0-0", 3.0).context_only


def test_tail_prints_a_context_only_turn_readably():
    from pipeline.stream.demo import format_label

    message = LabelMessage("call-9", 1, None, None, {}, None, "m", "1-0", 12.0, None, [FLAG_CONTEXT_ONLY], "Agent")
    assert format_label(message) == "call-9/1  -          (context only: Agent not labelled)  12 ms  [context_only]"


def _policy_of(argv: list[str], dest: str) -> SpeakerPolicy:
    return SpeakerPolicy(getattr(build_parser().parse_args(argv), dest))


def test_the_shipped_manifests_label_customers_only():
    docs = list(yaml.safe_load_all((REPO / "deploy" / "k8s" / "worker.yaml").read_text()))
    [deployment] = [d for d in docs if d and d["kind"] == "Deployment"]
    [worker] = deployment["spec"]["template"]["spec"]["containers"]
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]["worker"]["command"]
    job = yaml.safe_load((REPO / "deploy" / "kuberay" / "rayjob-label.yaml").read_text())["spec"]["entrypoint"]
    policies = [_policy_of(worker["args"], "stream.label_speakers"), _policy_of(compose, "stream.label_speakers"),
                _policy_of(shlex.split(job)[1:], "job.label_speakers")]
    for policy in policies:
        assert policy.pattern == CUSTOMERS and policy.labels("Customer") and not policy.labels("Agent")


def test_the_shipped_rules_are_for_customers_only():
    from pipeline.alerts.rules import load_rules

    rules = load_rules(REPO / "deploy" / "alerts" / "rules.yaml")
    assert rules and all(r.matches("customer") and not r.matches("agent") for r in rules)
    assert not any(re.search("agent", r.name) for r in rules)
