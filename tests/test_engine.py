"""The real vLLM engine (CPU build here) over a tiny random Llama, shared by the session."""

import math

import pytest
from conftest import SHARED_PREFIX

from pipeline.core.errors import AdapterError
from pipeline.core.predictions import LabelRequest
from pipeline.core.turns import Turn

pytestmark = pytest.mark.engine

TURNS = [
    Turn("c1", 0, "Monica", "You're going out with the guy!"),
    Turn("c1", 1, "Joey", "C'mon, you're going out with the guy! There's gotta be something wrong with him!"),
    Turn("c1", 2, "Chandler", "All right Joey, be nice. So does he have a hump?"),
    Turn("c2", 0, "Rachel", "Oh my God, I can't believe it, thank you so much!"),
]


def _requests(label_set="meld", adapter=None):
    return [LabelRequest(t, tuple(TURNS[max(0, i - 2):i]) if t.conversation_id == "c1" else (), label_set, adapter)
            for i, t in enumerate(TURNS)]


def _reference_probs(model_dir, adapter_dir, engine, request):
    """P(label | prompt) for every label by brute force with transformers, normalised over labels."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    prompt_ids = engine.prompter.encode(engine.prompter.build(request))
    space = engine.prompter.space(request.label_set)
    scores = {}
    for label, ids in space.trie.label_tokens.items():
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids + list(ids)])).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        scores[label] = sum(float(logprobs[len(prompt_ids) - 1 + k, t]) for k, t in enumerate(ids))
    top = max(scores.values())
    total = sum(math.exp(s - top) for s in scores.values())
    return {label: math.exp(s - top) / total for label, s in scores.items()}


def test_labels_are_valid_and_probabilities_sum_to_one(engine):
    for decoding in ("scoring", "choice"):
        predictions = engine.predict_prompts(engine.prompter.build_all(_requests()), "meld", decoding=decoding)
        for p in predictions:
            assert p.label in engine.prompter.space("meld").labels
            assert set(p.probs) == set(engine.prompter.space("meld").labels)
            assert sum(p.probs.values()) == pytest.approx(1.0, abs=1e-6)
            assert p.confidence == pytest.approx(p.probs[p.label])


def test_scoring_matches_transformers_brute_force(engine, tiny_model):
    request = _requests()[2]
    expected = _reference_probs(tiny_model, None, engine, LabelRequest(request.turn, request.context, "meld", "base"))
    got = engine.predict([LabelRequest(request.turn, request.context, "meld", "base")])[0]
    assert got.probs == pytest.approx(expected, abs=2e-3)
    assert got.label == max(expected, key=expected.get)


def test_scoring_is_exact_when_labels_share_first_tokens(engine, tiny_model, tiny_adapter):
    space = engine.prompter.space(SHARED_PREFIX.name)
    assert len({ids[0] for ids in space.trie.label_tokens.values()}) < len(space.trie.label_tokens), \
        "test labels must share a first token"
    request = LabelRequest(TURNS[3], (), SHARED_PREFIX.name, "tiny")
    expected = _reference_probs(tiny_model, tiny_adapter, engine, request)
    got = engine.predict([request])[0]
    assert got.probs == pytest.approx(expected, abs=2e-3)
    # First-token scoring would give these two one share; the reference tells them apart, and so do we.
    assert abs(expected["amazed"] - expected["amused"]) > 0.1


def test_adapter_changes_predictions_and_batches_can_mix_adapters(engine):
    base = engine.predict(_requests(adapter="base"))
    tuned = engine.predict(_requests(adapter="tiny"))
    assert max(abs(b.probs[k] - t.probs[k]) for b, t in zip(base, tuned) for k in b.probs) > 0.05
    assert {p.adapter for p in tuned} == {"tiny"} and {p.adapter for p in base} == {None}
    mixed = engine.predict([r if i % 2 else LabelRequest(r.turn, r.context, r.label_set, "tiny")
                            for i, r in enumerate(_requests(adapter="base"))])
    for i, p in enumerate(mixed):
        expected = tuned[i] if i % 2 == 0 else base[i]
        assert p.probs == pytest.approx(expected.probs, abs=1e-4)


def test_choice_mode_picks_a_label_consistent_with_its_first_step(engine):
    prompts = engine.prompter.build_all(_requests("emorynlp", "tiny"))
    choice = engine.predict_prompts(prompts, "emorynlp", "tiny", decoding="choice")
    scoring = engine.predict_prompts(prompts, "emorynlp", "tiny", decoding="scoring")
    for c, s in zip(choice, scoring):
        assert c.label in s.probs
        # With single-token labels both modes read the same first-step distribution.
        if engine.prompter.space("emorynlp").trie.query_points == [()]:
            assert c.probs == pytest.approx(s.probs, abs=1e-4)


def test_unknown_adapter_is_refused(engine):
    with pytest.raises(AdapterError, match="unknown adapter 'nope'"):
        engine.predict(_requests(adapter="nope"))


def test_an_adapters_temperature_calibrates_its_probabilities_and_a_budget_mismatch_warns(
        engine, tiny_adapter, tmp_path, caplog):
    import shutil

    from pipeline.core.calibration import apply_temperature
    from workers.adapters import AdapterMeta, write_adapter_meta

    folder = tmp_path / "calibrated"
    shutil.copytree(tiny_adapter, folder)
    write_adapter_meta(folder, AdapterMeta(context_turns=5, max_model_len=engine.config.max_model_len,
                                           temperatures={"meld": 2.5}))
    with caplog.at_level("WARNING", logger="workers.engine"):
        engine.add_adapter("calibrated-copy", str(folder))
    assert any("trained with context_turns=5" in r.getMessage() for r in caplog.records)
    assert not any("max_model_len" in r.getMessage() for r in caplog.records)
    raw = engine.predict(_requests(adapter="tiny"))
    calibrated = engine.predict(_requests(adapter="calibrated-copy"))
    for before, after in zip(raw, calibrated, strict=True):
        expected = apply_temperature(before.probs, 2.5)
        assert all(math.isclose(after.probs[k], v, rel_tol=1e-6, abs_tol=1e-9) for k, v in expected.items())
        assert after.label == before.label and after.confidence < before.confidence
    other_set = engine.predict(_requests(label_set="emorynlp", adapter="calibrated-copy"))
    plain = engine.predict(_requests(label_set="emorynlp", adapter="tiny"))
    for a, b in zip(other_set, plain, strict=True):  # no temperature recorded for this label set
        assert a.probs == pytest.approx(b.probs, rel=1e-6, abs=1e-9)


def test_the_conversation_prompt_fed_turn_by_turn_computes_only_its_new_turn(engine, tiny_model, data_root, capsys):
    """`bench engine`'s conversation rows (cost only, no timing asserted): warm, each turn's prompt
    extends the cached previous one, so far fewer tokens are computed than cold."""
    from pipeline.benchmarks.engine_bench import conversation_rows, round_robin
    from pipeline.core.datasets import load_dataset

    rounds = round_robin(load_dataset("meld", "test", data_root), 6)
    assert [q.turn.turn_id for q in rounds[1]] == [1] * len(rounds[1])  # turn r of every conversation
    result = conversation_rows(engine, str(tiny_model), engine.config, str(data_root), 6, 2)
    rows = result["conversation_rows"]
    warm, cold = rows["conversation prompt, warm"], rows["conversation prompt, cold"]
    assert warm["computed_tokens_per_turn"] < 0.6 * cold["computed_tokens_per_turn"]
    for row in rows.values():  # each row timed twice; it reports its fastest timing
        assert len(row["timings_turns_per_s"]) == 2
        assert row["turns_per_s"] == pytest.approx(max(row["timings_turns_per_s"]), abs=1e-3)
    by_round = [w / p for w, p in zip(warm["timings_turns_per_s"], rows["paper prompt (z=2)"]["timings_turns_per_s"],
                                      strict=True)]
    assert result["conversation_warm_ratio_paired"] == pytest.approx(sum(by_round) / 2, abs=2e-3)  # median of 2
    out = capsys.readouterr().out
    assert "conversation prompt, warm" in out and "paired by round" in out
