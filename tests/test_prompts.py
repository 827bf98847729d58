from pathlib import Path

import pytest

from pipeline.core.datasets import load_dataset
from pipeline.core.errors import ConfigError, PromptTooLongError
from pipeline.core.labels import get_label_set
from pipeline.core.prompts import PromptBuilder, PromptConfig
from pipeline.core.turns import Conversation, Turn

GOLDEN = Path(__file__).parent / "golden"
DATA = Path(__file__).parent / "data"


def _sources(data_root):
    return {
        "meld": load_dataset("meld", "test", data_root),
        "emorynlp": load_dataset("emorynlp", "dev", data_root),
        "dailydialog": load_dataset("dailydialog", "dev", data_root),
        "iemocap": load_dataset("iemocap", "test", DATA),
        "jsonl": load_dataset("jsonl", "test", DATA / "conversations.jsonl"),
    }


@pytest.mark.parametrize("dataset", ["meld", "emorynlp", "dailydialog", "iemocap", "jsonl"])
def test_golden_prompt_per_dataset(dataset, data_root):
    conv = _sources(data_root)[dataset][0]
    prompt = PromptBuilder(get_label_set(conv.label_set)).build(conv.turns[2], conv.context_of(2, 2))
    assert prompt == (GOLDEN / f"{dataset}.txt").read_text(encoding="utf-8")


def _conversation(n: int, words: int = 5) -> Conversation:
    turns = tuple(Turn("c", i, f"S{i % 2}", " ".join(f"w{i}x{j}" for j in range(words))) for i in range(n))
    return Conversation("c", turns)


def test_prompt_holds_the_previous_z_turns_in_order():
    conv = _conversation(5)
    prompt = PromptBuilder(get_label_set("meld"), PromptConfig(context_turns=2)).build(conv.turns[4], conv.turns[:4])
    assert "S0: w2x0" in prompt and "S1: w3x0" in prompt and "w1x0" not in prompt
    assert prompt.index("w2x0") < prompt.index("w3x0") < prompt.index("### Target utterance:\nS0: w4x0")
    assert prompt.endswith("### Response:")
    assert "neutral, joy, surprise, anger, sadness, disgust, fear" in prompt


def test_zero_context_and_description():
    turn = Turn("c", 3, "Ann", "Fine.", description="One person frowns.")
    prompt = PromptBuilder(get_label_set("meld"), PromptConfig(context_turns=0)).build(turn, _conversation(3).turns)
    assert "### Conversation:" not in prompt
    assert "### Video description:\nOne person frowns.\n\n### Response:" in prompt


def test_budget_trims_oldest_context_first_and_never_the_target():
    conv = _conversation(4, words=20)
    count = lambda text: len(text.split())  # noqa: E731
    full = PromptBuilder(get_label_set("meld"), PromptConfig(2, 10_000), count).build(conv.turns[3], conv.turns[:3])
    budget = count(full) - 5
    trimmed = PromptBuilder(get_label_set("meld"), PromptConfig(2, budget), count).build(conv.turns[3], conv.turns[:3])
    assert "w1x0" not in trimmed and "w2x0" in trimmed and "w3x19" in trimmed
    assert count(trimmed) <= budget


def test_target_alone_over_budget_is_an_error():
    conv = _conversation(2, words=400)
    with pytest.raises(PromptTooLongError, match="turn 1 of conversation c alone takes"):
        PromptBuilder(get_label_set("meld"), PromptConfig(2, 100)).build(conv.turns[1], conv.turns[:1])


def test_builder_is_deterministic():
    conv = _conversation(6)
    prompts = [[PromptBuilder(get_label_set("emorynlp")).build(t, conv.context_of(i, 2))
                for i, t in enumerate(conv.turns)] for _ in range(2)]
    assert prompts[0] == prompts[1] and len(set(prompts[0])) == len(conv.turns)


def test_bad_prompt_config():
    with pytest.raises(ConfigError, match="context_turns"):
        PromptConfig(context_turns=-1)


def test_conversation_prompt_ids_extend_turn_by_turn_and_the_engine_config_checks_its_fields(tiny_model):
    from pipeline.core.predictions import LabelRequest
    from pipeline.core.prompter import Prompter
    from workers.engine_config import EngineConfig

    prompter = Prompter.from_model(str(tiny_model), 64, 512, "conversation", 8)
    turns = [Turn("c", i, f"S{i % 2}", f"turn number {i}", description="Smiling." if i == 2 else None)
             for i in range(6)]
    ids = [prompter.build_ids(LabelRequest(t, tuple(turns[:i]))) for i, t in enumerate(turns)]
    for before, after, turn in zip(ids, ids[1:], turns[1:]):
        assert after == before + list(prompter.turn_part(turn))  # one line and its slot more
    text = prompter.build(LabelRequest(turns[3], tuple(turns[:3])))
    assert text.endswith("S1: turn number 3\nEmotion:") and "S0: turn number 2\n(video: Smiling.)\nEmotion:" in text
    assert text.startswith("### Instruction:\n") and text.count("\nEmotion:") == 4
    with pytest.raises(ConfigError, match="prompt: 'chat'"):
        EngineConfig(prompt="chat")
    with pytest.raises(ConfigError, match="window_step: must be > 0"):
        EngineConfig(window_step=0)


@pytest.mark.parametrize("prompt", ["dialoguellm", "conversation"])
def test_a_tokenizer_that_adds_bos_puts_it_once_at_the_start_of_every_prompt(tiny_gemma, data_root, prompt):
    """Gemma's tokenizer starts every encoding with <bos>: prompts built from parts (the conversation
    prompt) hold it only at the start, and the label tokens (one leading-space token each) never."""
    from transformers import AutoTokenizer

    from pipeline.core.evaluation import label_requests
    from pipeline.core.prompter import Prompter

    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma)
    bos = tokenizer.bos_token_id
    assert tokenizer("Hello").input_ids[0] == bos
    prompter = Prompter(tokenizer, 64 if prompt == "conversation" else 2, 512, prompt, 8)
    requests = label_requests(load_dataset("meld", "dev", data_root / "MELD" / "dev_sent_emo.csv")[:3],
                              prompter.context_turns)
    for ids in prompter.build_all_ids(requests):
        assert ids[0] == bos and bos not in ids[1:]
    tokens = prompter.space("meld").trie.label_tokens
    assert all(len(t) == 1 and bos not in t for t in tokens.values()), tokens


def test_an_adapter_is_served_with_the_prompt_it_was_trained_with_unless_a_flag_sets_one(tmp_path):
    import json

    from pipeline.cli import build_parser
    from pipeline.cli.configs import EvalConfig
    from pipeline.core.flags import config_from_args
    from workers.adapters import META_FILE
    from workers.engine_config import PROMPT_DEFAULTS, EngineConfig

    folder = tmp_path / "conversation-adapter"
    folder.mkdir()
    (folder / META_FILE).write_text(json.dumps({"prompt": "conversation", "context_turns": 64, "window_step": 4,
                                                      "max_model_len": 1024}))
    served = EngineConfig(adapters={"conv": str(folder)}).resolved()
    assert (served.prompt, served.context_turns, served.window_step, served.max_model_len) == \
        ("conversation", 64, 4, 1024)
    chosen = EngineConfig(adapters={"conv": str(folder)}, context_turns=5).resolved()
    assert (chosen.prompt, chosen.context_turns) == ("conversation", 5)  # a flag wins, the rest from training
    bare = EngineConfig(use_default_adapter=False).resolved()
    assert {name: getattr(bare, name) for name in PROMPT_DEFAULTS} == PROMPT_DEFAULTS
    untold = tmp_path / "trained-elsewhere"
    untold.mkdir()
    plain = EngineConfig(adapters={"other": str(untold)}).resolved()
    assert (plain.prompt, plain.context_turns) == (PROMPT_DEFAULTS["prompt"], PROMPT_DEFAULTS["context_turns"])
    # Through the command line: no prompt flags, the adapter's own settings.
    args = build_parser().parse_args(["eval", "--dataset", "meld", "--adapter", f"conv={folder}"])
    config = config_from_args(EvalConfig, args)
    assert (config.engine.prompt, config.engine.context_turns, config.engine.max_model_len) == ("conversation", 64, 1024)
    args = build_parser().parse_args(["eval", "--dataset", "meld", "--adapter", f"conv={folder}", "--max-model-len", "768"])
    assert config_from_args(EvalConfig, args).engine.max_model_len == 768  # a flag wins over training's window
