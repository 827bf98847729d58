"""`dialoguellm adapters load | default | unload | list`: roll an adapter out to running workers.

Each command but `list` adds one message to the control stream, which every worker applies (see
`pipeline.stream.control`). What the workers would refuse is refused here first, in one line and
exit code 2: a folder outside the workers' `--adapters-root` or not a LoRA adapter, a name already
loaded with other files, a default or unload of an adapter that is not loaded. The workers check
everything again: this side is a convenience, theirs is the trust boundary.
"""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path
from typing import Any

from pipeline.cli.configs import (
    AdaptersCommon,
    AdaptersDefaultConfig,
    AdaptersListConfig,
    AdaptersLoadConfig,
    AdaptersUnloadConfig,
)
from pipeline.cli.preflight import preflight
from pipeline.core.errors import ConfigError
from pipeline.core.rollout import RolloutRefused, RolloutState
from pipeline.core.wire import ControlMessage, MalformedMessage, as_text

REDIS_TIMEOUT_S = 10.0
PAGE = 500


def run_load(config: AdaptersLoadConfig) -> int:
    from workers.adapters import adapter_digest, check_rollout_adapter

    client, workers = _connect(config)
    roots = [config.adapters_root] if config.adapters_root else sorted({w["adapters_root"] for w in workers
                                                                         if w.get("adapters_root")})
    if not roots:
        raise ConfigError("adapters_root: not given, and no live worker reports one (start the workers with "
                          "--adapters-root)")
    ranks = [w["max_lora_rank"] for w in workers if w.get("max_lora_rank")]
    rank = config.max_lora_rank or (min(ranks) if ranks else 16)
    path = Path(config.path).expanduser().absolute()
    info = None
    for root in roots:
        info = check_rollout_adapter(config.name, path, root, rank)
    message = ControlMessage("load", config.name, str(path), digest=adapter_digest(info.path), **_sender())
    return _send(client, config, message, workers)


def run_default(config: AdaptersDefaultConfig) -> int:
    client, workers = _connect(config)
    return _send(client, config, ControlMessage("default", config.name, share=config.share, **_sender()), workers)


def run_unload(config: AdaptersUnloadConfig) -> int:
    client, workers = _connect(config)
    return _send(client, config, ControlMessage("unload", config.name, **_sender()), workers)


def run_list(config: AdaptersListConfig) -> int:
    _, workers = _connect(config)
    for w in workers:
        if config.json:
            print(json.dumps(w, sort_keys=True))
            continue
        canary = f" canary={w['canary']}@{w['share']:g}" if w.get("canary") else ""
        serving = "merged" if w.get("merged") else "lora"
        refused = f"  last refused: {w['refused']}" if w.get("refused") else ""
        print(f"{w['consumer']}  {w['in_stream']}  default={w['default'] or 'engine default'}{canary}  "
              f"adapters={','.join(w['adapters']) or 'none'} ({serving})  engines alive={w['engines_alive']}  "
              f"applied={w['applied']}  {time.time() - w['at']:.0f} s ago{refused}")
    if not workers:
        print(f"no live worker reports on {config.control_stream}")
    return 0


COMMANDS = {
    "load": ("load an adapter folder (under the workers' --adapters-root) into every running worker, by name",
             AdaptersLoadConfig, run_load),
    "default": ("make an adapter the default of turns naming none, or with --share a canary of them",
                AdaptersDefaultConfig, run_default),
    "unload": ("stop serving an adapter in every running worker", AdaptersUnloadConfig, run_unload),
    "list": ("what each live worker serves", AdaptersListConfig, run_list),
}


def _connect(config: AdaptersCommon) -> tuple[Any, list[dict]]:
    from pipeline.stream.redis_checks import connect

    preflight(config)
    client = connect(config.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
    return client, live_workers(client, config.control_stream)


def live_workers(client: Any, control_stream: str) -> list[dict]:
    """Every live worker's report (see `pipeline.stream.control.Rollout.report_fields`), by consumer name."""
    from pipeline.stream.config import worker_report_key

    keys = sorted(client.scan_iter(match=worker_report_key(control_stream, "*"), count=500))
    reports = []
    for value in client.mget(keys) if keys else ():
        if value is not None:
            try:
                reports.append(json.loads(value))
            except ValueError:
                continue
    return sorted(reports, key=lambda w: w.get("consumer", ""))


def current_state(client: Any, control_stream: str, workers: list[dict]) -> RolloutState:
    """The control stream folded (refused messages skipped, as the workers skip them), with what the
    live workers report serving on top: the state the next message applies to."""
    state, last = RolloutState(), None
    while True:
        page = client.xrange(control_stream, min="-" if last is None else f"({last}", count=PAGE)
        for entry_id, fields in page:
            last = as_text(entry_id)
            try:
                message = ControlMessage.parse(fields)
                state = state.apply(message, message.digest or f"unknown:{message.path}") \
                    if message.op == "load" else state.apply(message)
            except (MalformedMessage, RolloutRefused):
                continue
        if len(page) < PAGE:
            break
    adapters, seen = dict(state.adapters), dict(state.seen)
    for w in workers:
        for name, a in w.get("adapters", {}).items():
            adapters.setdefault(name, (a["path"], a["digest"]))
            seen.setdefault(name, a["digest"])
    if workers:
        w = workers[0]
        return RolloutState(adapters, w.get("default"), w.get("canary"), w.get("share") or 0.0, seen)
    return RolloutState(adapters, state.default, state.canary, state.share, seen)


def _send(client: Any, config: Any, message: ControlMessage, workers: list[dict]) -> int:
    state = current_state(client, config.control_stream, workers)
    state.apply(message, message.digest)  # refused here as the workers would: one line, exit 2
    entry_id = as_text(client.xadd(config.control_stream, message.encode()))
    print(f"sent: adapters {message.describe()} ({config.control_stream} {entry_id}, to {len(workers)} live "
          f"worker(s))", flush=True)
    if config.wait_s is None:
        return 0
    return _wait(client, config.control_stream, entry_id, [w["consumer"] for w in workers], config.wait_s)


def _wait(client: Any, control_stream: str, entry_id: str, consumers: list[str], wait_s: float) -> int:
    """Until every worker named has applied `entry_id` (or refused it); 1 when one refused or is late."""
    deadline = time.monotonic() + wait_s
    waiting = set(consumers)
    failed = False
    while waiting:
        for w in live_workers(client, control_stream):
            if w["consumer"] in waiting and _id(w["applied"]) >= _id(entry_id):
                waiting.discard(w["consumer"])
                refused = w.get("refused", "")
                if refused.startswith(f"{entry_id}:"):
                    failed = True
                    print(f"{w['consumer']}: refused: {refused.split(': ', 1)[1]}")
                else:
                    print(f"{w['consumer']}: applied")
        if waiting and time.monotonic() > deadline:
            print(f"not applied within {wait_s:g} s by: {', '.join(sorted(waiting))}")
            return 1
        if waiting:
            time.sleep(0.2)
    return 1 if failed else 0


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _sender() -> dict[str, Any]:
    try:
        who = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        who = ""
    return {"by": who, "at": time.time()}
