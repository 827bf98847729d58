"""Training: config validation, prompts identical to serving, and a tiny run through Ray Train."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.core.errors import ConfigError
from training.config import load_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "training" / "configs" / "tiny.yaml"


def _write(tmp_path, **changes) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("change, field", [
    ({"lora__target_modules": ["q_proj", "qkv_fused"]}, "lora.target_modules: unknown module 'qkv_fused'"),
    ({"lora__r": 0}, "lora.r: must be > 0"),
    ({"train": [{"dataset": "meld", "split": "train", "path": "/nowhere/meld.csv"}]}, "train[0].path: /nowhere"),
    ({"scaling__use_gpu": True}, "scaling.use_gpu: true, but no GPU is visible"),
    ({"optim__learning_rate": "fast"}, "optim.learning_rate: expected a number"),
    ({"optim__epochs_": 3}, "optim.epochs_: unknown field"),
    ({"prompt": "chat"}, "prompt: 'chat' is not one of dialoguellm, conversation"),
    ({"window_step": 0}, "window_step: must be > 0"),
    ({"prompt": "conversation", "objective": "lm"}, "objective: the conversation prompt's one-pass step"),
    ({"class_weight_power": 3}, "class_weight_power: must be in [0, 2]"),
    ({"decision_rule": "vote"}, "decision_rule: 'vote' is not one of argmax, fitted"),
    ({"decision_rule": "fitted", "decision_objective": {"dailydialog": "accuracy"}},
     "decision_objective: 'accuracy' (for dailydialog) is not one of balanced, micro_f1_without_neutral"),
    ({"decision_rule": "fitted", "decision_objective": {"sitcom": "balanced"}},
     "decision_objective: unknown label set 'sitcom'"),
    ({"decision_objective": {"meld": "balanced"}}, "decision_objective: applies to decision_rule fitted only"),
    ({"decision_objective": "micro_f1_without_neutral"}, "decision_objective: expected a mapping"),
])
def test_bad_configuration_is_named_at_start(tmp_path, change, field):
    import torch

    if "use_gpu" in field and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, **change))
    assert field in str(error.value)


def test_set_overrides_a_field_and_is_validated_like_the_file(tmp_path):
    """`--set` (both `dialoguellm train` and `python -m training.train`): one field changed, the rest
    as the file says; a bad override is refused by its field's name before anything runs."""
    path = _write(tmp_path)
    config = load_config(path, ["optim.epochs=1", "output_dir=elsewhere/adapter", "lora.target_modules=[q_proj]"])
    plain = load_config(path)
    assert (config.optim.epochs, config.output_dir, config.lora.target_modules) == (1, "elsewhere/adapter", ("q_proj",))
    assert config.optim.learning_rate == plain.optim.learning_rate and config.lora.r == plain.lora.r
    for override, field in (("optim.epochs=one", "optim.epochs: expected an integer"),
                            ("optim.epoch=1", "optim.epoch: unknown field"),
                            ("epochs", "--set: expected FIELD=VALUE"),
                            ("model.name=x", "model: is not a mapping")):
        with pytest.raises(ConfigError, match=re.escape(field)):
            load_config(path, [override])


def test_shipped_configs_are_valid():
    for path in sorted((REPO / "training" / "configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if raw.get("scaling", {}).get("use_gpu"):
            continue  # GPU settings are validated on GPU nodes; their fields are checked below
        assert load_config(path).lora.r > 0, path
    paper = yaml.safe_load((REPO / "training" / "configs" / "llama2-7b-a100.yaml").read_text())
    assert paper["lora"]["r"] == 8 and paper["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert paper["optim"]["learning_rate"] == 3e-4 and paper["max_model_len"] == 256
    assert paper["scaling"]["accelerator_type"] == "A100"


def test_cli_reports_a_bad_config_in_one_line(run_cli, tmp_path):
    result = run_cli("train", "--config", str(_write(tmp_path, lora__r=-1)))
    assert result.returncode == 2
    assert result.stderr.strip() == "dialoguellm: error: lora.r: must be > 0, got -1"


@pytest.mark.engine
def test_training_and_serving_prompts_are_byte_identical(engine, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    from pipeline.core.prompter import Prompter
    from training.examples import encode_examples, requests_from
    from training.objectives import example_rows

    config = load_config(_write(tmp_path, model=str(tiny_model), context_turns=2))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompter = Prompter(tokenizer, config.context_turns, config.max_model_len)
    requests = requests_from(config.train, config.context_turns)
    assert len(requests) == 64
    examples, skipped = encode_examples(requests, prompter)
    assert skipped == 0
    for request, example in zip(requests, examples, strict=True):
        prompt = prompter.build(request)
        assert prompt == engine.prompter.build(request)
        served = engine.prompter.encode(prompt)
        assert list(example.prompt_ids) == served
        label_ids = list(engine.prompter.space("meld").trie.label_tokens[request.turn.label])
        (row,) = example_rows("lm", example, prompter.space("meld"), tokenizer.eos_token_id)
        assert list(row.ids) == served + label_ids + [tokenizer.eos_token_id]


@pytest.mark.engine
def test_tiny_config_trains_an_adapter_the_engine_serves(engine, tiny_model, tmp_path):
    from training.train import fit

    output = tmp_path / "adapter"
    config = load_config(_write(tmp_path, model=str(tiny_model), output_dir=str(output)))
    summary = fit(config, storage=str(tmp_path / "ray"))
    assert (output / "adapter_config.json").is_file() and (output / "adapter_model.safetensors").is_file()
    assert not (output / "trainer_state.pt").exists()
    assert 0 <= summary["metrics"]["dev_weighted_f1"] <= 1 and summary["metrics"]["epoch"] in (0, 1)

    engine.add_adapter("trained", str(output))
    from test_engine import _requests

    base = engine.predict(_requests(adapter="base"))
    trained = engine.predict(_requests(adapter="trained"))
    assert max(abs(b.probs[k] - t.probs[k]) for b, t in zip(base, trained) for k in b.probs) > 0.01


def _free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.engine
def test_ray_job_submit_trains_the_tiny_config(tiny_model, tmp_path, engine, data_root):
    """A real local Ray head; the job is submitted with `ray job submit` as the README says."""
    ray = str(Path(sys.executable).parent / "ray")
    output = tmp_path / "job-adapter"
    # The job runs in a copy of the working directory: data paths are given explicitly.
    config = _write(tmp_path, model=str(tiny_model), output_dir=str(output),
                    train=[{"dataset": "meld", "split": "train", "limit": 32, "path": str(data_root)}],
                    dev=[{"dataset": "meld", "split": "dev", "limit": 16, "path": str(data_root)}])
    env = {**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}",
           "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"}
    temp = Path("/tmp") / f"ray-test-{tmp_path.name[-12:]}"
    # --block keeps the head in this process's hands: terminating it stops this cluster only
    # (`ray stop` would stop every Ray instance on the machine).
    # Free ports throughout, so the test's head never collides with another Ray instance here.
    gcs, dashboard, agent, agent_grpc, runtime_env, metrics = _free_ports(6)
    head = subprocess.Popen([ray, "start", "--head", "--block", "--num-cpus", "2", "--port", str(gcs),
                             "--dashboard-port", str(dashboard), "--dashboard-agent-listen-port", str(agent),
                             "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port",
                             str(runtime_env), "--metrics-export-port", str(metrics), "--temp-dir", str(temp),
                             "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:  # the head's job agent takes a few seconds to come up
            job = subprocess.run([ray, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir",
                                  str(REPO), "--", "python", "-m", "training.train", "--config", str(config),
                                  "--storage", str(tmp_path / "ray-job")],
                                 capture_output=True, text=True, env=env, timeout=900)
            starting = any(m in job.stdout + job.stderr for m in ("No available agent", "Failed to connect"))
            if not starting or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert job.returncode == 0, (job.stdout[-3000:], job.stderr[-2000:])
        assert "succeeded" in job.stdout
    finally:
        head.terminate()
        head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
    metrics = json.loads((output / "train_metrics.json").read_text())
    assert metrics["adapter"] == str(output)
    engine.add_adapter("from-job", str(output))
    assert engine.predict(__import__("test_engine")._requests(adapter="from-job"))[0].label in engine.prompter.space("meld").labels


def test_train_refuses_to_replace_a_folder_it_did_not_write(run_cli, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    result = run_cli("train", "--config", str(_write(tmp_path, output_dir=str(precious))))
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert str(precious) in message and "--overwrite" in message
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_bench_train_runs_the_plain_fast_and_conversation_loops_on_the_same_turns(tmp_path, tiny_model, data_root,
                                                                                   capsys):
    """`bench train`'s three loops end to end on the tiny model (figures are for the benchmark; here
    only that each loop trains over the same turns and the report holds its ratios)."""
    from pipeline.benchmarks.train_bench import run_train_benchmark

    recipe = _write(tmp_path, model=str(tiny_model), lora__top_layers=1, objective="label_ce")
    result = run_train_benchmark(24, "cpu", str(data_root), str(recipe), batch_size=4)
    assert result["examples"] == 24
    for key in ("ratio", "steady_ratio", "conversation_ratio"):
        assert result[key] > 0
    assert "(c) conversation loop" in capsys.readouterr().out
