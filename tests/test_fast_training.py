"""The fast training path computes exactly what the plain padded forward pass computes.

Loss and every LoRA gradient, for both objectives, with every layer trained and with the lower
layer frozen and cached, on a label set whose labels share first tokens (a multi-token trie), on a
tiny Llama and a tiny Gemma 3 (<bos> first, sliding-window layers whose window the prompts outgrow).
"""

import json
from pathlib import Path

import pytest
from conftest import SHARED_PREFIX

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["llama", "gemma3"])
def base_model(request):
    """Each architecture the fast paths cover: a tiny Llama (as SmolLM2) and a tiny Gemma 3."""
    return request.getfixturevalue("tiny_model" if request.param == "llama" else "tiny_gemma")


def _setup(tiny_model, data_root, label_set, split, seed=3):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.core.datasets import load_dataset
    from pipeline.core.evaluation import label_requests
    from pipeline.core.prompter import Prompter
    from training.examples import encode_examples

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64)
    layers = list(range(split, model.config.num_hidden_layers))
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, layers_to_transform=layers,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    prompter = Prompter(tokenizer, 2, 256)
    requests = label_requests(load_dataset("meld", "dev", data_root / "MELD" / "dev_sent_emo.csv"), 2, limit=12)
    labels = prompter.space(label_set).labels
    requests = [r.__class__(r.turn.__class__(**{**r.turn.__dict__, "label": labels[i % len(labels)]}),
                            r.context, label_set) for i, r in enumerate(requests)]
    examples, _ = encode_examples(requests, prompter)
    spaces = {label_set: prompter.space(label_set)}
    return model, examples, spaces, tokenizer


def _loss_and_grads(kind, model, examples, spaces, tokenizer, objective, split):
    from training.steps import make_batch_loss

    step = make_batch_loss(kind, model, objective, spaces, tokenizer.eos_token_id, tokenizer.pad_token_id, split)
    step.prepare(examples, log=lambda _: None)
    model.zero_grad()
    loss, _ = step.loss(list(range(len(examples))))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads


@pytest.mark.parametrize("objective", ["lm", "label_ce"])
@pytest.mark.parametrize("split", [0, 1])
@pytest.mark.parametrize("label_set", ["meld", SHARED_PREFIX.name])
def test_fast_loss_and_gradients_match_the_plain_computation(base_model, data_root, objective, split, label_set):
    model, examples, spaces, tokenizer = _setup(base_model, data_root, label_set, split)
    if label_set == SHARED_PREFIX.name:
        assert len(spaces[label_set].trie.query_points) > 1, "the test needs a multi-token label trie"
    plain_loss, plain_grads = _loss_and_grads("plain", model, examples, spaces, tokenizer, objective, split)
    fast_loss, fast_grads = _loss_and_grads("fast", model, examples, spaces, tokenizer, objective, split)
    assert abs(fast_loss - plain_loss) <= 1e-4 * abs(plain_loss)
    assert plain_grads.keys() == fast_grads.keys() and plain_grads
    for name, plain in plain_grads.items():
        error = (fast_grads[name] - plain).norm() / plain.norm()
        assert error <= 1e-4, f"{name}: relative gradient error {error:.2e}"
    if split:
        assert not any(".layers.0." in name for name in plain_grads), "layer 0 must be frozen"


@pytest.mark.engine
@pytest.mark.parametrize("label_set", ["meld", SHARED_PREFIX.name])
def test_label_ce_is_what_the_engine_serves(engine, tiny_model, tiny_adapter, label_set):
    """exp(-label_ce) of a turn is the probability the real vLLM engine serves for its gold label."""
    import math

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pipeline.core.predictions import LabelRequest
    from pipeline.core.turns import Turn
    from training.objectives import Example
    from training.steps import make_batch_loss

    space = engine.prompter.space(label_set)
    context = (Turn("c", 0, "Monica", "You're going out with the guy!"),)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                                      str(tiny_adapter))
    tokenizer = engine.prompter.tokenizer
    for gold in space.labels[:3]:
        request = LabelRequest(Turn("c", 1, "Joey", "C'mon, there's gotta be something wrong with him!", label=gold),
                               context, label_set, "tiny")
        served = engine.predict([request])[0].probs[gold]
        example = Example(tuple(engine.prompter.encode(engine.prompter.build(request))), label_set, gold)
        step = make_batch_loss("fast", model, "label_ce", {label_set: space}, tokenizer.eos_token_id,
                               tokenizer.pad_token_id)
        step.prepare([example], log=lambda _: None)
        with torch.no_grad():
            loss, _ = step.loss([0])
        assert math.isclose(math.exp(-loss.item()), served, rel_tol=2e-3, abs_tol=2e-3), (gold, served)


KILLER = """
import os, signal, sys
from dataclasses import replace
from pathlib import Path
import training.checkpoints as checkpoints
import training.loop as loop
from training.config import load_config

saves = 0
real_save = checkpoints.save_step_checkpoint

def save_then_die(folder, *args, **kwargs):
    global saves
    real_save(folder, *args, **kwargs)
    if Path(folder).name == loop.STEP_CHECKPOINT:
        saves += 1
        if saves == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill, right after the second step checkpoint

checkpoints.save_step_checkpoint = save_then_die  # run_training imports it when it starts
config = load_config(sys.argv[1])
loop.run_training(replace(config, model=sys.argv[2]), checkpoint_root=Path(sys.argv[3]), log=print)
"""


def _resume_config(tmp_path, tiny_model, prompt="dialoguellm"):
    import yaml

    raw = yaml.safe_load((REPO / "training" / "configs" / "tiny.yaml").read_text())
    raw.update(model=str(tiny_model), objective="label_ce")
    raw["lora"].update(dropout=0.1, top_layers=1)  # dropout: the RNG state must be restored too
    raw["optim"].update(epochs=2, batch_size=8, gradient_accumulation=2, checkpoint_every_steps=3)
    if prompt == "conversation":
        # 12 conversation segments a batch each, 6 steps an epoch: the second step checkpoint is mid-epoch 1.
        raw.update(prompt="conversation", context_turns=64, max_model_len=256, class_weight_power=0.5,
                   decision_rule="fitted")
        raw["optim"].update(batch_size=1, checkpoint_every_steps=4)
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("prompt", ["dialoguellm", "conversation"])
def test_a_killed_run_resumes_to_the_same_adapter(tmp_path, tiny_model, prompt):
    import subprocess
    import sys

    from safetensors.torch import load_file

    from pipeline.core.errors import ConfigError
    from training.checkpoints import check_resume
    from training.config import load_config
    from training.loop import STEP_CHECKPOINT, run_training

    path = _resume_config(tmp_path, tiny_model, prompt)
    config = load_config(path)
    whole_metrics = run_training(config, checkpoint_root=tmp_path / "whole", log=lambda _: None)
    # A fitted decision rule's dev figures come twice: on the turns it was fitted to, and held out.
    held_out = {k for k in whole_metrics if k.startswith("dev_held_out_")}
    assert held_out == ({f"dev_held_out_{k}_meld" for k in ("weighted_f1", "macro_f1", "negative_recall",
                                                             "negative_precision")} if prompt == "conversation" else set())

    killed = subprocess.run([sys.executable, "-c", KILLER, str(path), str(tiny_model), str(tmp_path / "cut")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    position = json.loads((tmp_path / "cut" / STEP_CHECKPOINT / "position.json").read_text())
    expected = (1, 4, 6) if prompt == "dialoguellm" else (1, 4, 8)
    assert (position["epoch"], position["batch"], position["step"]) == expected, "killed mid-epoch 1"
    assert not (tmp_path / "cut" / "epoch-1").exists()
    check_resume(tmp_path / "cut" / STEP_CHECKPOINT, config.to_dict())  # its own config: resumable
    with pytest.raises(ConfigError, match=r"was written with optim.epochs=2, this config has optim.epochs=3"):
        check_resume(tmp_path / "cut" / STEP_CHECKPOINT, load_config(path, ["optim.epochs=3"]).to_dict())

    run_training(config, resume=tmp_path / "cut" / STEP_CHECKPOINT, checkpoint_root=tmp_path / "cut",
                 log=lambda _: None)
    whole = load_file(str(tmp_path / "whole" / "epoch-1" / "adapter_model.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "epoch-1" / "adapter_model.safetensors"))
    assert whole.keys() == resumed.keys() and whole
    for name, weights in whole.items():
        assert (resumed[name] - weights).abs().max().item() <= 1e-6, name
    meta = (tmp_path / "cut" / "epoch-1" / "dialoguellm_adapter.json").read_text()
    assert meta == (tmp_path / "whole" / "epoch-1" / "dialoguellm_adapter.json").read_text()
    uninterrupted_epoch0 = load_file(str(tmp_path / "whole" / "epoch-0" / "adapter_model.safetensors"))
    assert any((uninterrupted_epoch0[k] - whole[k]).abs().max() > 1e-4 for k in whole), "epoch 1 trained"


def _conversation_setup(tiny_model, data_root, label_set, split, max_model_len=256, seed=5):
    """Conversation-prompt examples of the first MELD dev dialogues (a small window, so it moves)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.core.datasets import load_dataset
    from pipeline.core.evaluation import label_requests
    from pipeline.core.prompter import Prompter
    from training.examples import encode_examples

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                      layers_to_transform=list(range(split, model.config.num_hidden_layers)),
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    prompter = Prompter(tokenizer, 64, max_model_len, "conversation", window_step=4)
    conversations = load_dataset("meld", "dev", data_root / "MELD" / "dev_sent_emo.csv")[:4]
    requests = label_requests(conversations, prompter.context_turns)
    labels = prompter.space(label_set).labels
    requests = [r.__class__(r.turn.__class__(**{**r.turn.__dict__, "label": labels[i % len(labels)]}),
                            r.context, label_set) for i, r in enumerate(requests)]
    examples, skipped = encode_examples(requests, prompter)
    assert skipped == 0
    return model, examples, {label_set: prompter.space(label_set)}, tokenizer


# Class weights ride with the frozen lower layer: the two are independent parts of the step, and
# every combination of them would double the float64 work of the slowest test here.
@pytest.mark.parametrize("split, weighted", [(0, False), (1, True)])
@pytest.mark.parametrize("label_set", ["meld", SHARED_PREFIX.name])
def test_one_pass_per_conversation_matches_the_per_turn_computation(base_model, data_root, split, label_set,
                                                                    weighted):
    """label_ce read at every turn's slot of one pass per conversation segment = the per-turn prompts'
    (plain padded rows): loss and every LoRA gradient, with a window that moves, with the lower layer
    frozen and cached, on a multi-token label trie (extension positions), with class weights."""
    from training.conversation_step import conversation_segments
    from training.steps import make_batch_loss

    model, examples, spaces, tokenizer = _conversation_setup(base_model, data_root, label_set, split)
    segments = conversation_segments(examples)
    assert len(segments) < len(examples) / 3, "turns must share passes"
    assert len(segments) > 4, "the window must move at least once in a conversation (and conversations split)"
    if label_set == SHARED_PREFIX.name:
        assert len(spaces[label_set].trie.query_points) > 1, "the test needs a multi-token label trie"
    weights = {label_set: {label: 1.0 + k for k, label in enumerate(spaces[label_set].labels)}} if weighted else None

    def run(kind):
        step = make_batch_loss(kind, model, "label_ce", spaces, tokenizer.eos_token_id, tokenizer.pad_token_id,
                               split, class_weights=weights)
        step.prepare(examples, log=lambda _: None)
        model.zero_grad()
        loss, _ = step.loss(list(range(step.units)))
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, step

    plain_loss, plain_grads, _ = run("plain")
    one_loss, one_grads, step = run("conversation")
    assert [i for u in range(step.units) for i in step.members(u)] == list(range(len(examples)))
    assert abs(one_loss - plain_loss) <= 1e-4 * abs(plain_loss), (one_loss, plain_loss)
    assert plain_grads.keys() == one_grads.keys() and plain_grads
    worst = 0.0
    for name, plain in plain_grads.items():
        error = ((one_grads[name] - plain).norm() / plain.norm()).item()
        worst = max(worst, error)
        assert error <= 1e-4, f"{name}: relative gradient error {error:.2e}"
    print(f"loss {one_loss:.6f} vs {plain_loss:.6f}, worst relative gradient error {worst:.1e}")


@pytest.mark.engine
@pytest.mark.parametrize("label_set", ["meld", SHARED_PREFIX.name])
def test_one_pass_label_ce_is_what_the_engine_serves_for_the_conversation_prompt(engine, tiny_model, tiny_adapter,
                                                                                 label_set):
    """Every turn's probabilities read from one pass over the conversation are the ones the real vLLM
    engine serves for that turn's conversation prompt (sent as token ids); exp(-label_ce) of a turn
    is its gold label's served probability."""
    import math

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pipeline.core.predictions import LabelRequest
    from pipeline.core.prompter import Prompter
    from pipeline.core.turns import Turn
    from training.conversation_step import conversation_segments
    from training.objectives import Example
    from training.steps import make_batch_loss

    lines = [("Monica", "You're going out with the guy!"), ("Joey", "C'mon, there's gotta be something wrong with him!"),
             ("Chandler", "All right Joey, be nice."), ("Monica", "So does he have a hump?"), ("Rachel", "Wait, does he eat chalk?")]
    conversation = Prompter(engine.prompter.tokenizer, 64, engine.config.max_model_len, "conversation", 8)
    labels = conversation.space(label_set).labels
    turns = [Turn("c", i, who, text, label=labels[i % len(labels)]) for i, (who, text) in enumerate(lines)]
    requests = [LabelRequest(t, tuple(turns[:i]), label_set, "tiny") for i, t in enumerate(turns)]
    served_by, engine.prompter = engine.prompter, conversation  # the engine's own path: predict -> build_ids
    try:
        served = engine.predict(requests)
    finally:
        engine.prompter = served_by
    examples = [Example(tuple(conversation.build_ids(r)), label_set, r.turn.label) for r in requests]
    assert len(conversation_segments(examples)) == 1, "one pass for the whole conversation"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                                      str(tiny_adapter))
    tokenizer = conversation.tokenizer
    step = make_batch_loss("conversation", model, "label_ce", {label_set: conversation.space(label_set)},
                           tokenizer.eos_token_id, tokenizer.pad_token_id)
    step.prepare(examples, log=lambda _: None)
    rows = step.probabilities([0]).tolist()
    for request, prediction, row in zip(requests, served, rows, strict=True):
        for label, p in zip(labels, row, strict=False):
            assert math.isclose(p, prediction.probs[label], rel_tol=2e-3, abs_tol=2e-3), (request.turn.turn_id, label)
    single = make_batch_loss("conversation", model, "label_ce", {label_set: conversation.space(label_set)},
                             tokenizer.eos_token_id, tokenizer.pad_token_id)
    single.prepare(examples[-1:], log=lambda _: None)
    with torch.no_grad():
        loss, _ = single.loss([0])
    gold = requests[-1].turn.label
    assert math.isclose(math.exp(-loss.item()), served[-1].probs[gold], rel_tol=2e-3, abs_tol=2e-3)
