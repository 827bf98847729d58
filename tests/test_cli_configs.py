"""Flags come from the config dataclasses: one source for names, types, defaults, choices and help."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import COMMANDS, build_parser
from pipeline.core.flags import config_from_args

REPO = Path(__file__).resolve().parents[1]

# The arguments each command cannot do without (its fields with no default).
REQUIRED = {
    "eval": ["--dataset", "meld"], "train": ["--config", "c.yaml"], "push": ["turns.jsonl"],
    "describe": ["clip.mp4", "--start", "0", "--end", "1"], "label": ["--manifest", "m.csv", "--out", "o.parquet"],
    "alerts": ["--rules", "r.yaml"], "forget": ["--conversation", "c"], "corrections": ["--out", "exported"],
    "gate": ["--candidate", "new=adapters/new"], "adapters load": ["v2", "/adapters/v2"], "adapters default": ["v2"],
    "adapters unload": ["v1"], "calibrate": ["a=adapters/a", "--out", "recalibrated"],
    "average": ["a=adapters/a", "b=adapters/b", "--out", "averaged"],
}


def _commands():
    for name, entry in COMMANDS.items():
        if isinstance(entry[1], dict):
            for member, (_, config, _) in entry[1].items():
                yield [name, member], config
        else:
            yield [name], entry[1]


@pytest.mark.parametrize("words,config", list(_commands()), ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_no_flags_given_builds_the_configs_own_defaults(words, config):
    argv = words + REQUIRED.get(" ".join(words), REQUIRED.get(words[0], []))
    built = config_from_args(config, build_parser().parse_args(argv))
    required = {f.name: getattr(built, f.name) for f in dataclasses.fields(config)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert built == config(**required)


def test_flags_reach_nested_fields_with_their_types():
    from pipeline.cli.configs import ServeConfig

    args = build_parser().parse_args(["serve", "--batch-size", "7", "--engines", "2", "--context", "5",
                                      "--frames", "3", "--adapter", "a=/x", "--adapter", "b=/y", "--no-adapter"])
    config = config_from_args(ServeConfig, args)
    assert config.stream.batch_size == 7 and config.pool.engines == 2 and config.engine.context_turns == 5
    assert config.video.decode.frames == 3 and config.engine.adapters == {"a": "/x", "b": "/y"}
    assert config.engine.default_adapter == "a" and config.engine.use_default_adapter is False
    # Handed from the pool to the video actors: one setting.
    assert config.video.startup_timeout_s == config.pool.startup_timeout_s


def test_choices_are_the_registries_themselves():
    from workers.decoding import MODES as DECODING
    from workers.video.describers import DESCRIBERS
    from workers.video.modes import MODES as SAMPLING

    serve = next(a for a in build_parser()._subparsers._group_actions[0].choices["serve"]._actions
                 if a.dest == "engine.decoding")
    assert serve.choices == list(DECODING)
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["describe"]._actions}
    assert actions["video.describer"].choices == [*DESCRIBERS, "none"]
    assert actions["video.decode.mode"].choices == list(SAMPLING)


@pytest.mark.parametrize("argv,message", [
    (["serve", "--batch-size", "0"], "batch_size: must be > 0, got 0"),
    (["serve", "--decoding", "beam"], "argument --decoding: invalid choice: 'beam'"),
    (["label", "--manifest", "m.csv", "--out", "o.csv"], "out: 'o.csv' should name a .parquet folder"),
    (["watch", "--host", "0.0.0.0"], "token: binding 0.0.0.0 (not a loopback address) requires --token"),
    (["describe", "a.mp4", "--start", "2", "--end", "1"], "end: must be after start"),
    (["calibrate", "a=training/default_adapter", "--out", "o", "--objective", "dailydialog"],
     "objective: expected LABEL_SET=OBJECTIVE, got 'dailydialog'"),
    (["calibrate", "a=training/default_adapter", "--out", "o", "--objective", "meld=recall"],
     "objective: 'recall' (for meld) is not one of balanced, micro_f1_without_neutral"),
    (["average", "a=training/default_adapter", "--out", "o"], "members: give two or more adapters to average, got 1"),
    (["average", "a=training/default_adapter", "a=training/adapters/paper-top20-r16", "--out", "o"],
     "members: each adapter needs a name of its own, got a, a"),
])
def test_a_bad_value_is_one_line_naming_the_field(run_cli, argv, message):
    result = run_cli(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dialoguellm: error: ") and message in lines[0], result.stderr


def test_the_cli_reads_no_namespace_fields_by_hand():
    cli = "".join(p.read_text() for p in (REPO / "pipeline" / "cli").glob("*.py"))
    assert "hasattr(args" not in cli and "getattr(args" not in cli.replace("getattr(args, dest)", "")


def test_environment_variables_are_read_in_one_module_and_all_documented():
    from pipeline.core import envs

    out = subprocess.run(["grep", "-rln", "--include=*.py", "os.environ", "pipeline", "workers", "training"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.stdout.split() == ["pipeline/core/envs.py"]
    readme = (REPO / "README.md").read_text()
    table = dict(re.findall(r"^\| `([A-Za-z0-9_]+)` \| (read|set)", readme, re.M))
    assert table == {**{k: "read" for k in envs.READ}, **{k: "set" for k in envs.SET}}


def test_python_m_pipeline_cli_lists_the_benchmarks():
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "bench", "--help"], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0 and "engine" in out.stdout and "watch" in out.stdout


def test_training_as_a_module_takes_the_train_commands_flags():
    """`ray job submit -- python -m training.train` and `dialoguellm train`: one config, one set of flags."""
    def options(*argv):
        out = subprocess.run([sys.executable, *argv, "--help"], cwd=REPO, capture_output=True, text=True, check=True)
        return out.stdout.split("options:", 1)[1]

    module = options("-m", "training.train")
    assert module == options("-m", "pipeline.cli", "train")
    assert "--set FIELD=VALUE" in module and "--resume DIR" in module
