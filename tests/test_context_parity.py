"""One context rule on every path: the prompts of MELD dialogues with gaps in `Utterance_ID`, built
through evaluation, training, the stream's context store (real Redis) and batch labelling, are
byte-identical, and so are their token ids. For both prompts: the paper's (`dialoguellm`, 3 previous
turns) and the conversation prompt (every previous turn, with a window small enough to move)."""

import asyncio
import os
import uuid

import pytest

from pipeline.core.context import context_ids, select_context

GAPPED = ("93", "108")  # MELD test dialogues whose Utterance_IDs skip numbers


def test_the_rule_takes_ids_before_the_turn():
    assert list(context_ids(5, 2)) == [3, 4]
    assert list(context_ids(1, 3)) == [0]
    assert list(context_ids(4, 0)) == []
    assert select_context(9, 3, {0: "a", 5: "b", 7: "c", 8: "d"}) == ("c", "d")


@pytest.fixture(scope="module")
def gapped(data_root):
    from pipeline.core.datasets import load_dataset

    conversations = [c for c in load_dataset("meld", "test", data_root / "MELD" / "test_sent_emo.csv")
                     if c.conversation_id in GAPPED]
    assert len(conversations) == 2
    for conv in conversations:
        ids = [t.turn_id for t in conv.turns]
        assert ids != list(range(len(ids))), "the test needs gaps"
    return conversations


PROMPTERS = {"dialoguellm": dict(context_turns=3, max_model_len=512),
             "conversation": dict(context_turns=64, max_model_len=256, prompt="conversation", window_step=4)}


@pytest.fixture(scope="module", params=sorted(PROMPTERS))
def prompter(tiny_model, request):
    from pipeline.core.prompter import Prompter

    return Prompter.from_model(str(tiny_model), **PROMPTERS[request.param])


def test_the_conversation_window_moves_in_steps_and_never_back():
    from pipeline.core.context import window_start

    costs = {i: 10 for i in range(40)}
    starts = [window_start(k, 64, costs, 100, 8) for k in range(40)]
    assert starts[:11] == [0] * 11 and set(starts) == {0, 8, 16, 24, 32}
    assert starts == sorted(starts)
    assert [window_start(k, 20, costs, 10_000, 8) for k in (20, 21, 29)] == [0, 8, 16]  # at most z turns back
    # A turn too long for a whole step: the start falls back to ids after the last multiple of the step.
    assert window_start(19, 64, {**costs, 17: 200}, 100, 8) == 18
    assert window_start(5, 64, {i: 1000 for i in range(5)}, 100, 8) == 5  # nothing fits: no context


def _eval_prompts(conversations, prompter):
    from pipeline.core.evaluation import label_requests

    return _keyed(label_requests(conversations, prompter.context_turns), prompter)


def _keyed(requests, prompter):
    return {(r.turn.conversation_id, r.turn.turn_id): (prompter.build(r), tuple(prompter.build_ids(r)))
            for r in requests}


def _training_prompts(conversations, prompter, data_root):
    from training.config import DataSource
    from training.examples import encode_examples, requests_from

    requests = [r for r in requests_from((DataSource("meld", "test", str(data_root / "MELD" / "test_sent_emo.csv")),),
                                         prompter.context_turns) if r.turn.conversation_id in GAPPED]
    examples, skipped = encode_examples(requests, prompter)
    assert skipped == 0
    keys = [(r.turn.conversation_id, r.turn.turn_id) for r in requests]
    ids = {key: e.prompt_ids for key, e in zip(keys, examples, strict=True)}
    if prompter.prompt == "conversation":
        # What the one-pass step computes: each turn's prompt is its segment up to its head.
        from training.conversation_step import conversation_segments

        segments = conversation_segments(examples)
        assert len(segments) < len(examples)
        ids = {keys[i]: seg.ids[: head + 1] for seg in segments for i, head in zip(seg.members, seg.heads)}
    return ids, _keyed(requests, prompter)


def _stream_prompts(conversations, prompter):
    redis = pytest.importorskip("redis.asyncio")
    from pipeline.core.predictions import LabelRequest
    from pipeline.core.wire import TurnMessage
    from pipeline.stream.context_store import ContextStore

    async def run():
        client = redis.Redis.from_url(os.environ.get("DIALOGUELLM_TEST_REDIS", "redis://127.0.0.1:6379/0"))
        store = ContextStore(client, f"test-parity-{uuid.uuid4().hex[:8]}", prompter.context_turns,
                             max(50, prompter.context_turns), 60)
        prompts = {}
        try:
            for conv in conversations:
                messages = [TurnMessage.from_turn(t) for t in conv.turns]
                await store.remember(messages)
                for message, (context, _) in zip(messages, await store.contexts(messages), strict=True):
                    request = LabelRequest(message.to_turn(), context, "meld")
                    prompts[(message.conversation_id, message.turn_id)] = (prompter.build(request),
                                                                           tuple(prompter.build_ids(request)))
            await client.delete(*[store.key(c.conversation_id) for c in conversations])
        finally:
            await client.aclose()
        return prompts

    return asyncio.run(run())


def _batch_prompts(data_root, prompter):
    import pandas as pd

    from pipeline.labelling.manifest import add_context, normalise
    from pipeline.labelling.stages import label_requests

    path = data_root / "MELD" / "test_sent_emo.csv"
    table = pd.read_csv(path)
    table = table[table["Dialogue_ID"].astype(str).isin(GAPPED)]
    rows = add_context(normalise(table, None, "meld", str(path)), prompter.context_turns)
    return _keyed(label_requests(rows, "meld"), prompter)


def test_prompts_are_byte_identical_on_every_path(gapped, prompter, data_root):
    evaluation = _eval_prompts(gapped, prompter)
    training_ids, training = _training_prompts(gapped, prompter, data_root)
    stream = _stream_prompts(gapped, prompter)
    batch = _batch_prompts(data_root, prompter)
    assert len(evaluation) == sum(len(c.turns) for c in gapped)
    assert training == evaluation
    assert training_ids == {key: ids for key, (_, ids) in evaluation.items()}
    assert stream == evaluation
    assert batch == evaluation
    if prompter.prompt == "dialoguellm":
        assert all(ids == tuple(prompter.encode(text)) for text, ids in evaluation.values())
        # By id, not by position: turn 8 of dialogue 93 follows a gap (5-7), so it has no context.
        assert "### Conversation" not in evaluation[("93", 8)][0] and "### Conversation" in evaluation[("93", 4)][0]
        return
    # The conversation prompt: each turn extends the previous turn's ids while the window stays, and
    # the window moved at least once in these dialogues.
    moved = 0
    for conv in gapped:
        ids = [t.turn_id for t in conv.turns]
        for before, after in zip(ids, ids[1:]):
            a, b = evaluation[(conv.conversation_id, before)][1], evaluation[(conv.conversation_id, after)][1]
            moved += b[: len(a)] != a
    assert 0 < moved < sum(len(c.turns) for c in gapped) / 3
    assert evaluation[("93", 8)][0].count("\nEmotion:") > 1  # turn 8 of dialogue 93 sees turns before the gap


def test_the_stream_context_keeps_past_descriptions():
    """The conversation prompt shows past turns' video descriptions: the stream's store keeps them."""
    redis = pytest.importorskip("redis.asyncio")
    from pipeline.core.wire import TurnMessage
    from pipeline.stream.context_store import ContextStore

    async def run():
        client = redis.Redis.from_url(os.environ.get("DIALOGUELLM_TEST_REDIS", "redis://127.0.0.1:6379/0"))
        store = ContextStore(client, f"test-parity-{uuid.uuid4().hex[:8]}", 64, 64, 60)
        try:
            messages = [TurnMessage("c", 0, "A", "Hi.", description="Smiling."), TurnMessage("c", 1, "B", "Hello.")]
            await store.remember(messages)
            (context, complete), = await store.contexts([TurnMessage("c", 2, "A", "Bye.")])
            await client.delete(store.key("c"))
        finally:
            await client.aclose()
        return context, complete

    context, complete = asyncio.run(run())
    assert complete  # ids 0 and 1 asked (none before 0)
    assert [(t.turn_id, t.description) for t in context] == [(0, "Smiling."), (1, None)]
