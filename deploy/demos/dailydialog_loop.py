"""The adaptation loop on DailyDialog, which plays the call centre, end to end: every step a real
`dialoguellm` command; this script only glues them together and plays the supervisors.

    split -> label-first -> correct -> export -> train -> gate -> rollout -> eval -> summary

  split        DailyDialog dev (1000 dialogues) as the project's JSONL: the first --first dialogues are
               the part supervisors correct, the next --rest the held-out part (ids dd-dev-0007, ...)
  label-first  `dialoguellm serve` in the background (streams of this run's own, --control-stream,
               --adapters-root), on the shipped default adapter; `dialoguellm push FIRST.jsonl`; wait
               until every turn has its label
  correct      `dialoguellm watch --corrections --tokens-file ...`; every labelled turn of the first
               part gets its gold label as a correction: a few through the real page in headless
               Chromium, the rest through the bulk endpoint POST /api/corrections
  export       `dialoguellm corrections export --out WORKDIR/corrections`
  train        `dialoguellm train --config WORKDIR/train/config.yaml` (config.yaml beside this file,
               resolved: the export, the output folder, --train-set overrides)
  gate         `dialoguellm gate --candidate dd-v1=ADAPTER --against default --corrections ...`
  rollout      into the running serve, no restart: the adapter copied under --adapters-root, the
               held-out part pushed at --rate while `dialoguellm adapters load / default --share /
               default / unload default / list` run; wait until every turn is labelled exactly once
  eval         `dialoguellm eval` before (shipped default) and after (dd-v1) on the held-out part, and
               on MELD test
  summary      WORKDIR/reports/summary.json and summary.md (also the live rollout's figures)

Each step leaves WORKDIR/steps/STEP.json; a rerun skips finished steps (--redo STEP reruns it and
the steps after it). Each command is printed (and kept in WORKDIR/commands.sh) as `dialoguellm ...`;
it runs as `python -m pipeline.cli ...` of this checkout. Background serve, watch and push are
stopped on exit, on an error and on Ctrl-C. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "training" / "adapters" / "dailydialog-demo"  # its config; the published adapter and reports
STEPS = ("split", "label-first", "correct", "export", "train", "gate", "rollout", "eval", "summary")
CANDIDATE = "dd-v1"
LABEL_SET = "dailydialog"
BULK_WHO, PAGE_WHO = "dd-campaign", "dd-page"
MAX_BULK = 1000  # the watch server's limit per request


class LoopError(Exception):
    """A step could not finish: one line, the driver stops (finished steps stay done)."""


def say(line: str) -> None:
    print(line, flush=True)


def fmt_s(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def turn_key(row: dict) -> tuple[str, int]:
    return str(row["conversation_id"]), int(row["turn_id"])


def resolve_train_config(raw: dict, export_dir: Path, output_dir: Path, overrides: list[str]) -> dict:
    """The run's own copy of the training config: every jsonl source reads this run's export, the
    adapter goes to this run's folder, then the `KEY=VALUE` overrides (values parsed as YAML)."""
    import yaml

    from pipeline.core.errors import ConfigError
    from training.config import set_field

    config = json.loads(json.dumps(raw))
    config["output_dir"] = str(output_dir)
    for part in ("train", "dev"):
        for source in config.get(part) or ():
            if source.get("dataset") == "jsonl":
                source["path"] = str(export_dir)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LoopError(f"--train-set {item!r}: expected KEY=VALUE, e.g. optim.epochs=1 or train.1.limit=32")
        try:
            set_field(config, key, yaml.safe_load(value))
        except ConfigError as e:
            raise LoopError(f"--train-set {item!r}: no such field in the config ({e})") from None
    return config


def figures(gold: list[str], predicted: list[str]) -> dict[str, Any]:
    """Weighted-F1 and micro-F1 without neutral (the project's metric code), n and accuracy."""
    from pipeline.core.labels import get_label_set
    from pipeline.core.metrics import classification_report

    if not gold:
        return {"n": 0}
    report = classification_report(gold, predicted, get_label_set(LABEL_SET))
    out = {k: report[k] for k in ("n", "accuracy", "weighted_f1", "macro_f1", "micro_f1_without_neutral")}
    # micro-F1 without neutral reads 0 when neither gold nor the labels hold an emotion: say how many there were.
    out["gold_emotions"] = sum(1 for g in gold if g != "neutral")
    out["predicted_emotions"] = sum(1 for p in predicted if p != "neutral")
    return out


def live_figures(labels: dict[tuple[str, int], list[Any]], gold: dict[tuple[str, int], str]) -> dict[str, Any]:
    """The rollout's labels against gold, by the adapter each label names (and all of them)."""
    by_adapter: dict[str, tuple[list[str], list[str]]] = {}
    counts: Counter = Counter()
    for key, got in labels.items():
        for label in got:
            name = label.adapter or "base"
            counts[name] += 1
            if label.label is None or key not in gold:
                continue
            for group in (name, "all"):
                g, p = by_adapter.setdefault(group, ([], []))
                g.append(gold[key])
                p.append(label.label)
    return {"labels_per_adapter": dict(counts),
            "by_adapter": {name: figures(g, p) for name, (g, p) in sorted(by_adapter.items())}}


class Streams:
    """This run's Redis keys, under a prefix of its own (fixed at the first run, kept in run.json)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.turns, self.labels = f"{prefix}:turns", f"{prefix}:labels"
        self.dead = f"{prefix}:turns:dead"
        self.control, self.corrections, self.alerts = f"{prefix}:control", f"{prefix}:corrections", f"{prefix}:alerts"


class Tail:
    """Reads a stream on from where it last stopped (XRANGE in pages)."""

    def __init__(self, client: Any, stream: str) -> None:
        self.client, self.stream, self.last = client, stream, None

    def poll(self) -> list[tuple[bytes, dict]]:
        out = []
        while True:
            page = self.client.xrange(self.stream, min="-" if self.last is None else f"({self.last.decode()}",
                                      count=2000)
            out.extend(page)
            if page:
                self.last = page[-1][0]
            if len(page) < 2000:
                return out


def payload_turn(fields: dict) -> tuple[str, int] | None:
    """(conversation, turn) of an input or dead-letter entry's msgpack payload; None if unreadable."""
    import msgpack

    try:
        body = msgpack.unpackb(fields[b"payload"], raw=False)
        return str(body["conversation_id"]), int(body["turn_id"])
    except Exception:  # noqa: BLE001 - a foreign or broken entry is simply not one of ours
        return None


class Loop:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.wd = Path(args.workdir).expanduser().resolve()
        self.wd.mkdir(parents=True, exist_ok=True)
        (self.wd / "logs").mkdir(exist_ok=True)
        run_file = self.wd / "run.json"
        if run_file.is_file():
            run = read_json(run_file)
            for name in ("first", "rest"):
                if run[name] != getattr(args, name):
                    raise LoopError(f"--{name} {getattr(args, name)}: this work folder was started with "
                                    f"--{name} {run[name]} (use another --workdir)")
        else:
            run = {"prefix": args.prefix or f"dd-loop:{secrets.token_hex(4)}", "first": args.first,
                   "rest": args.rest, "started": time.time(), "redis": args.redis}
            write_json(run_file, run)
        self.run_info = run
        self.s = Streams(run["prefix"])
        self.children: list[subprocess.Popen] = []
        self.serve: subprocess.Popen | None = None
        self.watch: subprocess.Popen | None = None
        self._redis = None

    # ---- paths ----------------------------------------------------------------------------------

    @property
    def first_file(self) -> Path:
        return self.wd / "data" / "first.jsonl"

    @property
    def rest_file(self) -> Path:
        return self.wd / "data" / "rest.jsonl"

    @property
    def export_dir(self) -> Path:
        return self.wd / "corrections"

    @property
    def adapter_dir(self) -> Path:
        return self.wd / "train" / "adapter"

    @property
    def adapters_root(self) -> Path:
        return self.wd / "adapters"

    @property
    def reports(self) -> Path:
        return self.wd / "reports"

    def redis(self) -> Any:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.args.redis)
            self._redis.ping()
        return self._redis

    # ---- commands -------------------------------------------------------------------------------

    def show(self, argv: list[str], background: bool = False) -> None:
        line = "dialoguellm " + shlex.join(argv) + (" &" if background else "")
        say(f"$ {line}")
        with open(self.wd / "commands.sh", "a", encoding="utf-8") as f:
            f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}\n{line}\n")

    def _popen(self, argv: list[str], out: Any) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-u", "-m", "pipeline.cli", *argv], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.children.append(proc)
        return proc

    def run(self, argv: list[str], log: str, check: bool = True) -> tuple[int, str]:
        """Run a command in the foreground, its output shown and kept in logs/LOG.log."""
        self.show(argv)
        captured = bytearray()
        with open(self.wd / "logs" / f"{log}.log", "ab") as f:
            proc = self._popen(argv, subprocess.PIPE)
            assert proc.stdout is not None
            while chunk := os.read(proc.stdout.fileno(), 65536):
                captured += chunk
                f.write(chunk)
                f.flush()
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            rc = proc.wait()
        self.children.remove(proc)
        if check and rc != 0:
            raise LoopError(f"`dialoguellm {argv[0]}` exited {rc} (log: {self.wd / 'logs' / f'{log}.log'})")
        return rc, captured.decode(errors="replace")

    def start(self, argv: list[str], log: str) -> subprocess.Popen:
        """Start a command in the background, its output in logs/LOG.log."""
        self.show(argv, background=True)
        with open(self.wd / "logs" / f"{log}.log", "ab") as f:
            return self._popen(argv, f)

    def stop(self, proc: subprocess.Popen | None, grace_s: float = 120.0) -> None:
        """SIGTERM (a clean stop: serve finishes its batches), then SIGKILL of its process group."""
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                say(f"loop: pid {proc.pid} did not stop within {grace_s:.0f} s: killed")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # what it left behind in its own group (it leads it)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc in self.children:
            self.children.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.children)):
            self.stop(proc, grace_s=20.0 if proc is not self.serve else 120.0)
        self.serve = self.watch = None

    def log_tail(self, log: str, lines: int = 15) -> str:
        path = self.wd / "logs" / f"{log}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.is_file() else []
        return "\n".join("    " + t for t in text)

    # ---- steps ----------------------------------------------------------------------------------

    def marker(self, step: str) -> Path:
        return self.wd / "steps" / f"{step}.json"

    def step(self, number: int, name: str, fn) -> dict:
        marker = self.marker(name)
        if marker.is_file() and name != "summary":
            say(f"== {number} {name}: done before, skipped ({marker})")
            return read_json(marker)
        say(f"\n== {number} {name}")
        start = time.time()
        out = fn() or {}
        out["seconds"] = round(time.time() - start, 1)
        out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        write_json(marker, out)
        say(f"== {number} {name}: done in {fmt_s(out['seconds'])}")
        return out

    def redo(self, step: str) -> None:
        for later in STEPS[STEPS.index(step):]:
            self.marker(later).unlink(missing_ok=True)
        if STEPS.index(step) <= STEPS.index("rollout"):
            (self.wd / "steps" / "rollout-parts.json").unlink(missing_ok=True)

    # ---- 0: split -------------------------------------------------------------------------------

    def split(self) -> dict:
        from pipeline.core.datasets import load_dataset

        conversations = load_dataset("dailydialog", "dev", self.args.data)
        first, rest_n = self.args.first, self.args.rest
        rest_n = len(conversations) - first if rest_n is None else rest_n
        if first <= 0 or rest_n <= 0 or first + rest_n > len(conversations):
            raise LoopError(f"--first {first} --rest {rest_n}: DailyDialog dev has {len(conversations)} dialogues")

        def rows(convs) -> list[dict]:
            return [{"conversation_id": f"dd-dev-{int(c.conversation_id):04d}", "turn_id": t.turn_id,
                     "speaker": t.speaker, "text": t.text, "label": t.label} for c in convs for t in c.turns]

        parts = {"first": rows(conversations[:first]), "rest": rows(conversations[first:first + rest_n])}
        write_jsonl(self.first_file, parts["first"])
        write_jsonl(self.rest_file, parts["rest"])
        out = {}
        for name, part in parts.items():
            out[name] = {"file": str(self.first_file if name == "first" else self.rest_file),
                         "dialogues": len({r["conversation_id"] for r in part}), "turns": len(part),
                         "labels": dict(Counter(r["label"] for r in part).most_common())}
            say(f"{name}: {out[name]['dialogues']} dialogues, {out[name]['turns']} turns -> {out[name]['file']}")
        return out

    # ---- 1: serve -------------------------------------------------------------------------------

    def ensure_serve(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            return
        self.adapters_root.mkdir(parents=True, exist_ok=True)
        argv = ["serve", "--redis", self.args.redis, "--in-stream", self.s.turns, "--out-stream", self.s.labels,
                "--control-stream", self.s.control, "--adapters-root", str(self.adapters_root),
                "--log-format", "text", "--engine-timeout-per-turn-s", f"{self.args.engine_timeout_per_turn_s:g}",
                *self.args.serve_arg]
        start = time.time()
        self.serve = self.start(argv, "serve")
        say("waiting for the worker to report (engine start: about a minute on a CPU) ...")
        deadline = time.monotonic() + self.args.start_timeout_s
        while not self.workers():
            if self.serve.poll() is not None:
                raise LoopError(f"`dialoguellm serve` exited {self.serve.returncode}:\n{self.log_tail('serve')}")
            if time.monotonic() > deadline:
                raise LoopError(f"serve: no worker report within {self.args.start_timeout_s:.0f} s\n"
                                f"{self.log_tail('serve')}")
            time.sleep(1.0)
        seconds = time.time() - start
        say(f"serve: worker up in {seconds:.0f} s")
        self.note_timing("serve_start_s", seconds)

    def workers(self) -> list[dict]:
        r = self.redis()
        keys = list(r.scan_iter(match=f"{self.s.control}:workers:*", count=500))
        return [json.loads(v) for v in r.mget(keys) if v] if keys else []

    def note_timing(self, name: str, value: float) -> None:
        path = self.wd / "steps" / "timings.json"
        data = read_json(path) if path.is_file() else {}
        data.setdefault(name, []).append(round(value, 1))
        write_json(path, data)

    def check_serve(self) -> None:
        if self.serve is None or self.serve.poll() is not None:
            code = None if self.serve is None else self.serve.returncode
            raise LoopError(f"`dialoguellm serve` is not running (exit {code}):\n{self.log_tail('serve')}")

    # ---- pushing and waiting --------------------------------------------------------------------

    def pushed_turns(self) -> Counter:
        return Counter(k for _, f in Tail(self.redis(), self.s.turns).poll() if (k := payload_turn(f)))

    def push_missing(self, source: Path, rate: float | None, background: bool) -> subprocess.Popen | None:
        """`dialoguellm push` of the turns of `source` not yet in the input stream (all of them the
        first time; a rerun after an interruption pushes only the rest, so no turn is sent twice)."""
        rows = read_jsonl(source)
        pushed = self.pushed_turns()
        missing = [r for r in rows if turn_key(r) not in pushed]
        if not missing:
            say(f"push: every turn of {source.name} is in {self.s.turns} already")
            return None
        path = source
        if len(missing) < len(rows):
            path = source.with_name(source.stem + "-missing.jsonl")
            write_jsonl(path, missing)
            say(f"push: {len(rows) - len(missing)} turns of {source.name} were pushed before; pushing the "
                f"other {len(missing)}")
        argv = ["push", str(path), "--label-set", LABEL_SET, "--redis", self.args.redis, "--stream", self.s.turns]
        if rate:
            argv += ["--rate", f"{rate:.3g}"]
        if background:
            return self.start(argv, "push")
        self.run(argv, "push")
        return None

    def wait_labelled(self, wanted: set[tuple[str, int]], what: str, during: list[subprocess.Popen] = ()) -> dict:
        """Until every wanted turn has its label (or a dead letter), with a progress line and ETA."""
        from pipeline.core.wire import LabelMessage

        labels_tail, dead_tail = Tail(self.redis(), self.s.labels), Tail(self.redis(), self.s.dead)
        labels: dict[tuple[str, int], list] = {}
        dead: set[tuple[str, int]] = set()
        start = time.monotonic()
        last_change, last_print, last_done, base = start, 0.0, 0, None
        while True:
            for _, fields in labels_tail.poll():
                label = LabelMessage.decode(fields)
                key = (label.conversation_id, label.turn_id)
                if key in wanted:
                    labels.setdefault(key, []).append(label)
            for _, fields in dead_tail.poll():
                key = payload_turn(fields)
                if key in wanted:
                    dead.add(key)
            done = len(wanted & (set(labels) | dead))
            now = time.monotonic()
            base = done if base is None else base  # labelled before the wait began: not in the rate
            if done != last_done:
                last_change, last_done = now, done
            if done >= len(wanted) and not last_print:
                say(f"  {what}: all {len(wanted)} turns labelled already")
                break
            if done >= len(wanted) or now - last_print >= self.args.progress_s:
                elapsed = now - start
                rate = (done - base) / elapsed if elapsed > 0 and done > base else 0.0
                eta = (len(wanted) - done) / rate if rate else float("nan")
                say(f"  {what}: {done}/{len(wanted)} turns labelled ({100 * done / len(wanted):.1f}%)"
                    + (f", {len(dead)} dead-lettered" if dead else "")
                    + f", {rate:.2f} turns/s, elapsed {fmt_s(elapsed)}, ETA "
                    + ("-" if eta != eta else fmt_s(eta)))
                last_print = now
            if done >= len(wanted):
                break
            self.check_serve()
            for proc in during:
                if proc.poll() not in (None, 0):
                    raise LoopError(f"a background command exited {proc.returncode} (see {self.wd / 'logs'})")
            if now - last_change > self.args.stall_s:
                raise LoopError(f"{what}: no progress for {self.args.stall_s:.0f} s ({done}/{len(wanted)})\n"
                                f"{self.log_tail('serve')}")
            time.sleep(1.0)
        return {"labels": labels, "dead": dead, "seconds": time.monotonic() - start}

    # ---- 2: label the first part ----------------------------------------------------------------

    def label_first(self) -> dict:
        self.ensure_serve()
        rows = read_jsonl(self.first_file)
        wanted = {turn_key(r) for r in rows}
        self.push_missing(self.first_file, None, background=False)
        got = self.wait_labelled(wanted, "first part")
        adapters = Counter(lab.adapter or "base" for ls in got["labels"].values() for lab in ls)
        twice = sum(1 for ls in got["labels"].values() if len(ls) > 1)
        say(f"first part: {len(got['labels'])} turns labelled ({dict(adapters)}), {len(got['dead'])} dead-lettered, "
            f"{twice} labelled more than once")
        return {"turns": len(wanted), "labelled": len(got["labels"]), "dead": len(got["dead"]), "twice": twice,
                "adapters": dict(adapters), "labelling_s": round(got["seconds"], 1),
                "turns_per_s": round(len(wanted) / got["seconds"], 2) if got["seconds"] else None}

    # ---- 3: the supervisors' corrections --------------------------------------------------------

    def tokens(self) -> dict[str, str]:
        path = self.wd / "tokens"
        if not path.is_file():
            path.write_text(f"# watch --tokens-file: NAME TOKEN\n{BULK_WHO} {secrets.token_urlsafe(32)}\n"
                            f"{PAGE_WHO} {secrets.token_urlsafe(32)}\n", encoding="utf-8")
            path.chmod(0o600)
        pairs = [line.split() for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.startswith("#")]
        return {name: token for name, token in pairs}

    def current_labels(self, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], Any]:
        """The latest label of each wanted turn in the labels stream."""
        from pipeline.core.wire import LabelMessage

        out = {}
        for _, fields in Tail(self.redis(), self.s.labels).poll():
            label = LabelMessage.decode(fields)
            if (label.conversation_id, label.turn_id) in wanted:
                out[(label.conversation_id, label.turn_id)] = label
        return out

    def corrections(self) -> list[Any]:
        from pipeline.core.wire import CorrectionMessage

        return [CorrectionMessage.decode(f) for _, f in Tail(self.redis(), self.s.corrections).poll()]

    def start_watch(self, window_min: float, keep_turns: int) -> str:
        log = self.wd / "logs" / "watch.log"
        offset = log.stat().st_size if log.is_file() else 0
        argv = ["watch", "--redis", self.args.redis, "--labels-stream", self.s.labels,
                "--alerts-stream", self.s.alerts, "--in-stream", self.s.turns, "--port", "0", "--show-text",
                "--window-min", f"{window_min:.0f}", "--keep-turns", str(keep_turns), "--corrections",
                "--corrections-stream", self.s.corrections, "--tokens-file", str(self.wd / "tokens")]
        self.watch = self.start(argv, "watch")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = log.read_bytes()[offset:].decode(errors="replace") if log.is_file() else ""
            for line in text.splitlines():
                if line.startswith("watch: http"):
                    url = line.split(" ", 1)[1].strip()
                    return url if url.endswith("/") else url + "/"
            if self.watch.poll() is not None:
                raise LoopError(f"`dialoguellm watch` exited {self.watch.returncode}:\n{self.log_tail('watch')}")
            time.sleep(0.5)
        raise LoopError(f"watch: no address within 120 s\n{self.log_tail('watch')}")

    def correct(self) -> dict:
        rows = read_jsonl(self.first_file)
        gold = {turn_key(r): r["label"] for r in rows}
        served = {k: v for k, v in self.current_labels(set(gold)).items() if v.label is not None}
        if not served:
            raise LoopError("no labelled turn of the first part in the labels stream: run label-first again")
        tokens = self.tokens()
        done = {(c.conversation_id, c.turn_id) for c in self.corrections()}
        todo = sorted(set(served) - done)
        say(f"{len(served)} labelled turns of the first part, {len(done & set(served))} corrected before, "
            f"{len(todo)} to correct")
        first_ms = int(self.redis().xrange(self.s.labels, count=1)[0][0].split(b"-")[0])
        window_min = (time.time() * 1000 - first_ms) / 60000 + 120  # every label of this run, with room
        longest = max(Counter(cid for cid, _ in gold).values())
        url = self.start_watch(window_min, max(100, longest + 10))
        say(f"watch: {url}")
        http = Http(url)
        bulk_token, page_token = tokens[BULK_WHO], tokens[PAGE_WHO]
        self.wait_board(http, bulk_token, served)
        out: dict[str, Any] = {"url": url, "window_min": round(window_min), "keep_turns": max(100, longest + 10)}

        # A few through the real page: turns served wrong, an emotion in gold, one per conversation.
        picks = pick_page_turns([k for k in todo], served, gold, self.args.page_corrections)
        if picks:
            start = time.time()
            page_corrections(url, page_token, [(cid, tid, gold[(cid, tid)]) for cid, tid in picks],
                             {(cid, tid): rows_text(rows, cid, tid) for cid, tid in picks})
            out["page"] = {"turns": [f"{c}/{t}" for c, t in picks], "seconds": round(time.time() - start, 1)}
        # The rest through the bulk endpoint, at most MAX_BULK a request.
        rest = [k for k in todo if k not in set(picks)]
        start, written = time.time(), 0
        for i in range(0, len(rest), self.args.bulk_size):
            chunk = rest[i:i + self.args.bulk_size]
            body = {"corrections": [{"conversation_id": c, "turn_id": t, "label": gold[(c, t)]} for c, t in chunk]}
            status, answer = http.post("api/corrections", body, bulk_token)
            if status != 200 or answer.get("written") != len(chunk) or answer.get("who") != BULK_WHO:
                raise LoopError(f"POST /api/corrections ({len(chunk)} corrections): {status} {answer}")
            written += len(chunk)
            say(f"  bulk: {written}/{len(rest)} corrections written (who={answer['who']})")
        out["bulk"] = {"corrections": written, "requests": -(-len(rest) // self.args.bulk_size) if rest else 0,
                       "seconds": round(time.time() - start, 1)}
        self.stop(self.watch, grace_s=20)
        self.watch = None

        # Check: every labelled turn corrected once, to its gold label, `who` as the token's name.
        latest = {}
        for c in self.corrections():
            latest[(c.conversation_id, c.turn_id)] = c
        wrong = [k for k in served if k not in latest or latest[k].corrected_label != gold[k]]
        page_keys = set(picks)
        whos = Counter(c.who for c in latest.values())
        bad_who = [k for k, c in latest.items() if c.who != (PAGE_WHO if k in page_keys else BULK_WHO)
                   and k not in done]
        if wrong or bad_who:
            raise LoopError(f"corrections: {len(wrong)} turns without their gold correction, {len(bad_who)} with "
                            f"another who (e.g. {(wrong or bad_who)[:3]})")
        out.update(corrected=len(latest), who=dict(whos),
                   served_wrong=sum(1 for k in served if served[k].label != gold[k]))
        say(f"corrections: {len(latest)} turns, who {dict(whos)}; the served label was wrong on "
            f"{out['served_wrong']} of them")
        return out

    def wait_board(self, http: Http, token: str, served: dict) -> None:
        """Until the page's board holds every labelled turn (it loads the window on start)."""
        want = Counter(cid for cid, _ in served)
        pending, deadline = set(want), time.monotonic() + 300
        while pending:
            for cid in sorted(pending):
                status, answer = http.get("api/conversation", {"id": cid}, token)
                if status == 200 and sum(1 for t in answer["turns"] if t.get("label")) >= want[cid]:
                    pending.discard(cid)
            if pending and time.monotonic() > deadline:
                raise LoopError(f"watch: {len(pending)} conversations not on the board after 300 s "
                                f"(e.g. {sorted(pending)[:3]})")
            if pending:
                time.sleep(1.0)
        say(f"watch: all {len(want)} conversations on the board")

    # ---- 4: export ------------------------------------------------------------------------------

    def export(self) -> dict:
        self.run(["corrections", "export", "--redis", self.args.redis, "--corrections-stream", self.s.corrections,
                  "--in-stream", self.s.turns, "--label-set", LABEL_SET, "--out", str(self.export_dir)], "export")
        manifest = read_json(self.export_dir / "manifest.json")
        if not manifest["corrected_turns"].get("train") or not manifest["corrected_turns"].get("dev"):
            raise LoopError(f"export: {manifest['corrected_turns']}: the train or the dev part is empty "
                            "(too few conversations for --dev-share 0.2? use a larger --first)")
        return {"dir": str(self.export_dir), **{k: manifest[k] for k in ("corrected_turns", "conversations",
                                                                          "left_out_without_text")}}

    # ---- 5: train -------------------------------------------------------------------------------

    def train(self) -> dict:
        import yaml

        raw = yaml.safe_load(Path(self.args.config).read_text(encoding="utf-8"))
        resolved = resolve_train_config(raw, self.export_dir, self.adapter_dir, self.args.train_set)
        folder = self.wd / "train"
        config_path = folder / "config.yaml"
        folder.mkdir(parents=True, exist_ok=True)
        header = (f"# resolved by {Path(__file__).name} from {self.args.config}"
                  + (f" with --train-set {' '.join(self.args.train_set)}" if self.args.train_set else "") + "\n")
        config_path.write_text(header + yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
        storage = folder / "ray_results"
        argv = ["train", "--config", str(config_path), "--storage", str(storage)]
        checkpoint = storage / self.adapter_dir.name / "local-checkpoints" / "last-step"
        if checkpoint.is_dir():
            say(f"train: continuing from the step checkpoint {checkpoint}")
            argv += ["--resume", str(checkpoint)]
        _, output = self.run(argv, "train")
        summary = {}
        for line in reversed(output.splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    summary = json.loads(line)
                    break
        if not (self.adapter_dir / "adapter_config.json").is_file():
            raise LoopError(f"train: no adapter in {self.adapter_dir}")
        return {"config": str(config_path), "adapter": str(self.adapter_dir), "summary": summary}

    # ---- 6: gate --------------------------------------------------------------------------------

    def gate(self) -> dict:
        report = self.reports / "gate.json"
        argv = ["gate", "--candidate", f"{CANDIDATE}={self.adapter_dir}", "--against", "default",
                "--corrections", str(self.export_dir), "--report", str(report)]
        argv += self.data_flag() + (["--limit", str(self.args.gate_limit)] if self.args.gate_limit else [])
        rc, output = self.run(argv, "gate", check=False)
        if rc not in (0, 1) or not report.is_file():
            raise LoopError(f"`dialoguellm gate` exited {rc} without a decision (log: {self.wd / 'logs/gate.log'})")
        lines = output.splitlines()
        header = next((k for k, line in enumerate(lines) if line.startswith("set ")), 0)
        table = [line for line in lines[header:] if line.strip()]
        (self.reports / "gate.txt").write_text("\n".join(table) + f"\nexit code {rc}\n", encoding="utf-8")
        decision = read_json(report)
        say(f"gate: exit code {rc} ({'PASSED' if rc == 0 else 'FAILED'})")
        return {"exit_code": rc, "passed": decision["passed"], "reasons": decision["reasons"], "report": str(report)}

    def data_flag(self) -> list[str]:
        return ["--data", str(self.args.data)] if self.args.data else []

    # ---- 7: roll out into the running serve -----------------------------------------------------

    def rollout(self) -> dict:
        gate = read_json(self.marker("gate"))
        if not gate["passed"] and not self.args.ignore_gate:
            say("rollout: the gate FAILED, so dd-v1 is not rolled out (--ignore-gate rolls it out anyway)")
            return {"skipped": "gate failed"}
        parts_file = self.wd / "steps" / "rollout-parts.json"
        parts = read_json(parts_file) if parts_file.is_file() else {}

        def part(name: str, fn) -> None:
            if name in parts:
                say(f"  rollout {name}: done before, skipped")
                return
            start = time.time()
            fn()
            parts[name] = {"at": time.time(), "seconds": round(time.time() - start, 1)}
            write_json(parts_file, parts)

        target = self.adapters_root / CANDIDATE
        if not (target / "adapter_config.json").is_file():
            say(f"rollout: copying {self.adapter_dir} to {target}")
            shutil.copytree(self.adapter_dir, target)
        elif digest(target) != digest(self.adapter_dir):
            raise LoopError(f"{target} holds other files than {self.adapter_dir}: a name stands for one set of "
                            f"files (start from a fresh --workdir)")
        self.ensure_serve()
        rows = read_jsonl(self.rest_file)
        wanted = {turn_key(r) for r in rows}
        rate = len(rows) / self.args.push_s
        push = self.push_missing(self.rest_file, rate, background=True)
        started = time.time()
        control = ["--redis", self.args.redis, "--control-stream", self.s.control]

        def adapters(*argv: str, log: str = "rollout") -> None:
            self.run(["adapters", *argv, *control], log)

        if "load" not in parts:
            self.pause(self.args.pre_load_s, "the shipped default labels the first turns", push)
        part("load", lambda: adapters("load", CANDIDATE, str(target), "--wait-s", f"{self.args.adapter_wait_s:g}"))
        part("canary", lambda: adapters("default", CANDIDATE, "--share", f"{self.args.canary_share:g}",
                                        "--wait-s", f"{self.args.adapter_wait_s:g}"))
        part("canary-hold", lambda: self.pause(self.args.canary_s, f"canary: {self.args.canary_share:g} of the "
                                                                  f"conversations on {CANDIDATE}", push))
        part("default", lambda: adapters("default", CANDIDATE, "--wait-s", f"{self.args.adapter_wait_s:g}"))
        part("unload", lambda: adapters("unload", "default", "--wait-s", f"{self.args.adapter_wait_s:g}"))
        adapters("list")
        if push is not None:
            remaining = self.args.push_s - (time.time() - started)
            say(f"rollout: waiting for the push to end (about {fmt_s(remaining)})")
            while push.poll() is None:
                self.check_serve()
                time.sleep(1.0)
            if push.returncode != 0:
                raise LoopError(f"`dialoguellm push` exited {push.returncode}:\n{self.log_tail('push')}")
            self.children.remove(push)
        got = self.wait_labelled(wanted, "held-out part")
        pushed = self.pushed_turns()
        labels = got["labels"]
        twice = sorted(k for k, ls in labels.items() if len(ls) > 1)
        pushed_twice = sorted(k for k in wanted if pushed[k] > 1)
        gold = {turn_key(r): r["label"] for r in rows}
        live = live_figures(labels, gold)
        live.update(turns=len(wanted), labelled=len(labels), dead=len(got["dead"]), labelled_twice=len(twice),
                    pushed_twice=len(pushed_twice), exactly_once=not twice and not pushed_twice and not got["dead"],
                    rate=round(rate, 3), workers=self.workers())
        write_json(self.reports / "live.json", live)
        say(f"rollout: {len(labels)}/{len(wanted)} held-out turns labelled, {len(twice)} twice, "
            f"{len(got['dead'])} dead-lettered; labels per adapter {live['labels_per_adapter']}")
        for name, f in live["by_adapter"].items():
            if f["n"]:
                say(f"  live {name:>8}: n={f['n']}  weighted-F1 {f['weighted_f1']:.4f}  micro-F1 w/o neutral "
                    f"{f['micro_f1_without_neutral']:.4f}")
        if not live["exactly_once"]:
            raise LoopError(f"rollout: not every held-out turn labelled exactly once ({len(twice)} twice, "
                            f"{len(pushed_twice)} pushed twice, {len(got['dead'])} dead; see {self.reports / 'live.json'})")
        # The live part is over: the engine's core goes to the evaluations.
        self.stop(self.serve)
        self.serve = None
        return {"parts": parts, "live": str(self.reports / "live.json"), "push_rate": round(rate, 3)}

    def pause(self, seconds: float, why: str, push: subprocess.Popen | None) -> None:
        say(f"rollout: {why} ({seconds:.0f} s)")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check_serve()
            if push is not None and push.poll() not in (None, 0):
                raise LoopError(f"`dialoguellm push` exited {push.returncode}:\n{self.log_tail('push')}")
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))

    # ---- 8: evaluations -------------------------------------------------------------------------

    def evaluate(self) -> dict:
        if self.serve is not None:
            self.stop(self.serve)
            self.serve = None
        self.reports.mkdir(parents=True, exist_ok=True)
        adapter = ["--adapter", f"{CANDIDATE}={self.adapter_dir}"]
        rest = ["--dataset", "jsonl", "--data", str(self.rest_file), "--label-set", LABEL_SET]
        meld = ["--dataset", "meld", "--split", "test", *self.data_flag()]
        limit = ["--limit", str(self.args.meld_limit)] if self.args.meld_limit else []
        runs = {"before": rest, "after": rest + adapter, "meld-test-after": meld + limit + adapter}
        if self.args.meld_before_report:
            runs_meld_before = None
            shutil.copyfile(self.args.meld_before_report, self.reports / "meld-test-before.json")
            say(f"meld-test-before: {self.args.meld_before_report} (given)")
        else:
            runs_meld_before = meld + limit
        if runs_meld_before is not None:
            runs["meld-test-before"] = runs_meld_before
        out = {}
        for name, argv in runs.items():
            report = self.reports / f"{name}.json"
            if report.is_file():
                say(f"  eval {name}: {report} exists, skipped")
            else:
                self.run(["eval", *argv, "--report", str(report)], f"eval-{name}")
            out[name] = str(report)
        return out

    # ---- 9: summary -----------------------------------------------------------------------------

    def summary(self) -> dict:
        def marker(name: str) -> dict:
            return read_json(self.marker(name)) if self.marker(name).is_file() else {}

        def pick(report: dict) -> dict:
            keys = ("n", "weighted_f1", "micro_f1_without_neutral", "macro_f1", "accuracy", "adapter", "model",
                    "turns_per_s")
            out = {k: report.get(k) for k in keys}
            neutral = report.get("per_class", {}).get("neutral", {}).get("support")
            out["gold_emotions"] = None if neutral is None else report["n"] - neutral
            return out

        reports = {}
        for name in ("before", "after", "meld-test-before", "meld-test-after"):
            path = self.reports / f"{name}.json"
            reports[name] = pick(read_json(path)) if path.is_file() else None
        gate_path = self.reports / "gate.json"
        gate = read_json(gate_path) if gate_path.is_file() else None
        live = read_json(self.reports / "live.json") if (self.reports / "live.json").is_file() else None
        timings = read_json(self.wd / "steps" / "timings.json") if (self.wd / "steps" / "timings.json").is_file() \
            else {}
        summary = {
            "run": {**self.run_info, "workdir": str(self.wd), "streams": self.s.prefix,
                    "config": str(self.args.config), "train_set": self.args.train_set},
            "steps_s": {name: marker(name).get("seconds") for name in STEPS[:-1]},
            "serve_start_s": timings.get("serve_start_s"),
            "split": marker("split"), "label_first": marker("label-first"), "corrections": marker("correct"),
            "export": marker("export"), "train": marker("train").get("summary"),
            "gate": None if gate is None else {
                "exit_code": marker("gate").get("exit_code"), "passed": gate["passed"], "reasons": gate["reasons"],
                "sets": [{"name": s["name"], "role": s["role"], "n": s["candidate"].get("n"),
                          **{f"{m}_{who}": s[who].get(m) for m in ("weighted_f1", "macro_f1",
                                                                    "micro_f1_without_neutral")
                             for who in ("candidate", "against")}} for s in gate["sets"]]},
            "dailydialog_rest": {"before": reports["before"], "after": reports["after"]},
            "meld_test": {"before": reports["meld-test-before"], "after": reports["meld-test-after"]},
            "live": None if live is None else {k: live[k] for k in live if k != "workers"},
            "rollout": marker("rollout"),
        }
        write_json(self.reports / "summary.json", summary)
        (self.reports / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
        say(summary_markdown(summary))
        say(f"wrote {self.reports / 'summary.json'} and summary.md")
        if self.args.publish:
            self.publish()
        if self.args.drop_streams:
            from pipeline.stream.client import delete_keys

            say(f"deleted {delete_keys(self.redis(), f'{self.s.prefix}:*')} Redis keys of {self.s.prefix}:*")
        return {"summary": str(self.reports / "summary.json")}

    def publish(self) -> None:
        """Copy the adapter, its resolved config and the reports into this folder (to be committed)."""
        if not (self.adapter_dir / "adapter_config.json").is_file():
            raise LoopError("--publish: no adapter trained yet")
        target = HERE / "adapter"
        if target.exists():
            shutil.rmtree(target)
        # PEFT's README.md is an empty model-card template; this folder's README describes the adapter.
        shutil.copytree(self.adapter_dir, target, ignore=shutil.ignore_patterns("README.md"))
        shutil.copyfile(self.wd / "train" / "config.yaml", HERE / "train-config.resolved.yaml")
        reports = HERE / "reports"
        reports.mkdir(exist_ok=True)
        for path in sorted(self.reports.iterdir()):
            if path.suffix in (".json", ".md", ".png", ".txt"):
                shutil.copyfile(path, reports / path.name)
        shutil.copyfile(self.wd / "commands.sh", reports / "commands.sh")
        say(f"published: {target}, {HERE / 'train-config.resolved.yaml'}, {reports}/")


class Http:
    """The watch page's API over HTTP (no proxy: the page is on this machine)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, request: urllib.request.Request) -> tuple[int, dict]:
        try:
            with self.opener.open(request, timeout=300) as reply:
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body or b"{}")
            except ValueError:
                return e.code, {"error": body.decode(errors="replace")}

    def get(self, path: str, params: dict, token: str) -> tuple[int, dict]:
        from urllib.parse import urlencode

        return self._call(urllib.request.Request(f"{self.url}{path}?{urlencode(params)}",
                                                 headers={"Authorization": f"Bearer {token}"}))

    def post(self, path: str, body: dict, token: str) -> tuple[int, dict]:
        return self._call(urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "X-DialogueLLM-Write": "1",
                     "Content-Type": "application/json"}))


def pick_page_turns(todo: list[tuple[str, int]], served: dict, gold: dict, k: int) -> list[tuple[str, int]]:
    """Up to k turns for the page, one per conversation: served wrong with an emotion in gold first,
    then served wrong, then any."""
    def rank(key):
        wrong = served[key].label != gold[key]
        return (not (wrong and gold[key] != "neutral"), not wrong, key)

    picks, seen = [], set()
    for key in sorted(todo, key=rank):
        if key[0] not in seen and len(picks) < k:
            picks.append(key)
            seen.add(key[0])
    return picks


def rows_text(rows: list[dict], cid: str, tid: int) -> str:
    return next(r["text"] for r in rows if r["conversation_id"] == cid and r["turn_id"] == tid)


ROW_OF = ("return [...document.querySelectorAll('#board .row')].find(r => r.dataset.cid === arguments[0]) "
          "|| null")


def page_corrections(url: str, token: str, picks: list[tuple[str, int, str]], texts: dict) -> None:
    """A supervisor on the real page, in headless Chromium: opens it with her token, opens each
    conversation from its row on the board and picks the gold label in the turn's *correct…* menu."""
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    from pipeline.watch.browser import headless_chromium

    driver = headless_chromium()
    try:
        def until(predicate, timeout: float = 60.0, what: str = ""):
            try:
                return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)
            except Exception as e:  # noqa: BLE001 - a timeout or a stale element: the page did not get there
                raise LoopError(f"page: {what}: {type(e).__name__}") from None

        driver.get(f"{url}?token={token}")
        until(lambda d: d.find_element("id", "status").text == "live", what="the page did not go live")
        for cid, tid, label in picks:
            row = until(lambda d: d.execute_script(ROW_OF, cid), what=f"no row for {cid} on the board")
            old = driver.find_elements("css selector", "#turns tr.turn")
            click_row(driver, row, lambda: until(lambda d: d.execute_script(ROW_OF, cid), what=f"no row for {cid}"))
            turn_css = f'#turns tr.turn[data-turn="{tid}"]'
            words = " ".join(texts[(cid, tid)].split())[:30]

            def opened(d):
                if d.find_element("id", "detail-title").text != cid or (old and not _stale(old[0])):
                    return False
                found = d.find_elements("css selector", f"{turn_css} select.correct")
                text = d.find_elements("css selector", f"{turn_css} td.speaker")
                return found[0] if found and text and words in " ".join(text[0].text.split()) else False

            picker = until(opened, what=f"{cid} did not open with turn {tid}")
            Select(picker).select_by_value(label)
            shown = until(lambda d: [e for e in d.find_elements("css selector", f"{turn_css} .corrected")
                                     if label in e.text and PAGE_WHO in e.text],
                          what=f"{cid}/{tid}: the correction is not shown")
            note = driver.find_element("id", "detail-note").text
            say(f"  page: {cid}/{tid} corrected to {label} ({shown[0].text.strip()!r}; {note!r})")
    finally:
        driver.quit()


def click_row(driver, row, find_again, tries: int = 5) -> None:
    """Click a board row as a supervisor does (rows are redrawn as the board changes: found again
    when stale; the open detail panel closed first when it covers the row)."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

    for attempt in range(tries):
        try:
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
            row.click()
            return
        except StaleElementReferenceException:
            row = find_again()
        except ElementClickInterceptedException:
            if attempt == tries - 1:
                raise LoopError("page: the row is covered and cannot be clicked") from None
            with contextlib.suppress(Exception):
                driver.find_element("id", "detail-close").click()
            row = find_again()
    raise LoopError("page: the row kept being redrawn under the click")


def _stale(element) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _delta(a: Any, b: Any) -> str:
    return f"{b - a:+.4f}" if isinstance(a, float) and isinstance(b, float) else "-"


def summary_markdown(s: dict) -> str:
    lines = [f"# DailyDialog adaptation loop: {s['run']['first']} dialogues corrected, held-out "
             f"{s['split'].get('rest', {}).get('dialogues', '?')}", ""]
    lines += ["| figure | shipped default | dd-v1 | Δ |", "| --- | ---: | ---: | ---: |"]
    for title, pair in (("DailyDialog held-out", s["dailydialog_rest"]), ("MELD test", s["meld_test"])):
        before, after = pair["before"] or {}, pair["after"] or {}
        n, emotions = after.get("n") or before.get("n"), after.get("gold_emotions", before.get("gold_emotions"))
        title = f"{title} (n={n}, {emotions} with an emotion)"
        for key, name in (("weighted_f1", "weighted-F1"), ("micro_f1_without_neutral", "micro-F1 w/o neutral")):
            lines.append(f"| {title} {name} | {_f(before.get(key))} | {_f(after.get(key))} | "
                         f"{_delta(before.get(key), after.get(key))} |")
    gate = s.get("gate")
    if gate:
        lines += ["", f"Gate: {'PASSED' if gate['passed'] else 'FAILED'} (exit code {gate['exit_code']})", "",
                  "| set | role | n | wF1 dd-v1 | wF1 default | Δ wF1 |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        for x in gate["sets"]:
            lines.append(f"| {x['name']} | {x['role']} | {x['n']} | {_f(x['weighted_f1_candidate'])} | "
                         f"{_f(x['weighted_f1_against'])} | {_delta(x['weighted_f1_against'], x['weighted_f1_candidate'])} |")
        lines += [f"- {r}" for r in gate["reasons"]]
    live = s.get("live")
    if live:
        lines += ["", f"Live rollout: {live['labelled']}/{live['turns']} held-out turns labelled, exactly once: "
                      f"{live['exactly_once']}; labels per adapter: {live['labels_per_adapter']}", "",
                  "| labels of | n | with an emotion (gold) | weighted-F1 | micro-F1 w/o neutral |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for name, f in live["by_adapter"].items():
            lines.append(f"| {name} | {f['n']} | {f.get('gold_emotions', '-')} | {_f(f.get('weighted_f1'))} | "
                         f"{_f(f.get('micro_f1_without_neutral'))} |")
    elif s.get("rollout", {}).get("skipped"):
        lines += ["", f"Rollout skipped: {s['rollout']['skipped']}"]
    lines += ["", "| step | time |", "| --- | ---: |"]
    lines += [f"| {name} | {fmt_s(t) if t is not None else '-'} |" for name, t in s["steps_s"].items()]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", default=str(REPO / "runs" / "dailydialog-demo"),
                   help="the run's folder: data, logs, markers, export, adapter, reports (default: runs/dailydialog-demo)")
    p.add_argument("--first", type=int, default=500, help="dialogues the supervisors correct (default 500)")
    p.add_argument("--rest", type=int, default=None, help="held-out dialogues after them (default: all the others)")
    p.add_argument("--data", default=None, help="data root (default: $DIALOGUELLM_DATA or ../shared/data)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("--prefix", default=None, help="stream key prefix (default: dd-loop:RANDOM, fixed per work folder)")
    p.add_argument("--config", default=str(HERE / "config.yaml"), help="training config (default: config.yaml here)")
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config value, e.g. optim.epochs=1, train.1.limit=32 (repeatable)")
    p.add_argument("--page-corrections", type=int, default=3, help="corrections made in the real page (default 3)")
    p.add_argument("--bulk-size", type=int, default=MAX_BULK, help=f"corrections per bulk request (≤ {MAX_BULK})")
    p.add_argument("--gate-limit", type=int, default=None, help="gate --limit: first N turns of each set")
    p.add_argument("--meld-limit", type=int, default=None,
                   help="eval --limit on MELD test (the held-out part is always evaluated whole)")
    p.add_argument("--meld-before-report", default=None,
                   help="an eval report of the shipped default on MELD test to reuse (e.g. reports/default-meld-test.json)")
    p.add_argument("--ignore-gate", action="store_true", help="roll dd-v1 out even when the gate failed")
    p.add_argument("--push-s", type=float, default=600.0, help="seconds the held-out push spans (--rate from it)")
    p.add_argument("--pre-load-s", type=float, default=60.0, help="seconds of the push before `adapters load`")
    p.add_argument("--canary-share", type=float, default=0.1)
    p.add_argument("--canary-s", type=float, default=120.0, help="how long the canary holds")
    p.add_argument("--adapter-wait-s", type=float, default=900.0, help="adapters ... --wait-s")
    p.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for `dialoguellm serve` (repeatable, e.g. --serve-arg=--batch-size=16)")
    p.add_argument("--engine-timeout-per-turn-s", type=float, default=10.0,
                   help="serve --engine-timeout-per-turn-s (default 10: LoRA serving during the rollout costs several\n"
                        "times the merged model's time on a CPU; serve's default of 1 s a turn took a busy engine as\n"
                        "hung on a shared 2-core machine)")
    p.add_argument("--start-timeout-s", type=float, default=900.0, help="how long serve may take to come up")
    p.add_argument("--stall-s", type=float, default=1200.0, help="fail when no turn is labelled for this long")
    p.add_argument("--progress-s", type=float, default=10.0, help="seconds between progress lines")
    p.add_argument("--redo", choices=STEPS, default=None, help="rerun this step and the ones after it")
    p.add_argument("--until", choices=STEPS, default=None, help="stop after this step")
    p.add_argument("--publish", action="store_true",
                   help="copy the adapter, its resolved config and the reports into this folder (to be committed)")
    p.add_argument("--drop-streams", action="store_true",
                   help="after the summary, delete this run's Redis keys (its streams, context store, markers)")
    args = p.parse_args(argv)
    if not 0 < args.bulk_size <= MAX_BULK:
        p.error(f"--bulk-size: 1 to {MAX_BULK}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    loop = None
    try:
        loop = Loop(args)
        say(f"loop: work folder {loop.wd}, streams {loop.s.prefix}:*, commands run as "
            f"`{Path(sys.executable).name} -m pipeline.cli` of {REPO}")
        if args.redo:
            loop.redo(args.redo)
        if args.page_corrections and not loop.marker("correct").is_file():
            from pipeline.watch.browser import check_chromium

            check_chromium()  # before an hour of labelling, not after it
        fns = {"split": loop.split, "label-first": loop.label_first, "correct": loop.correct, "export": loop.export,
               "train": loop.train, "gate": loop.gate, "rollout": loop.rollout, "eval": loop.evaluate,
               "summary": loop.summary}
        numbers = {"split": 0, "label-first": 2, "correct": 3, "export": 4, "train": 5, "gate": 6, "rollout": 7,
                   "eval": 8, "summary": 9}
        for name in STEPS:
            loop.step(numbers[name], name, fns[name])
            if name == args.until:
                break
        return 0
    except LoopError as e:
        say(f"loop: error: {e}")
        return 1
    except Exception as e:
        from pipeline.core.errors import DialogueLLMError

        if not isinstance(e, DialogueLLMError):
            raise
        say(f"loop: error: {e}")
        return 1
    except KeyboardInterrupt:
        say("loop: interrupted; finished steps stay done, rerun the same command to go on")
        return 130
    finally:
        if loop is not None:
            loop.close()


if __name__ == "__main__":
    sys.exit(main())
