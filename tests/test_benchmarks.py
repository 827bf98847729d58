"""The benchmarks' workloads (pure): what they feed, not how fast (figures live in the README)."""

from pipeline.benchmarks.engine_bench import paired_ratio, round_robin, time_rows
from pipeline.benchmarks.stream_bench import stream_requests
from pipeline.core.datasets import load_dataset


def test_live_conversations_are_interleaved_in_time_order(data_root):
    requests = stream_requests(str(data_root), 2, None, conversations=50)
    meld = load_dataset("meld", "test", data_root)
    assert len(requests) == sum(len(c.turns) for c in meld)
    first_seen: dict[str, int] = {}
    last_turn: dict[str, int] = {}
    for i, q in enumerate(requests):
        c = q.turn.conversation_id
        first_seen.setdefault(c, i)
        assert q.turn.turn_id > last_turn.get(c, -1)  # each conversation's turns in order
        last_turn[c] = q.turn.turn_id
    # The first 50 conversations are live from the start, each sending its first turn in turn.
    assert [q.turn.conversation_id for q in requests[:50]] == [c.conversation_id for c in meld[:50]]
    assert len({q.turn.conversation_id for q in requests[:200]}) >= 50


def test_engine_rounds_hold_turn_r_of_every_conversation_with_its_whole_past(data_root):
    meld = load_dataset("meld", "test", data_root)
    rounds = round_robin(meld, 20)
    assert [q.turn.conversation_id for q in rounds[0]] == [c.conversation_id for c in meld[:20]]
    assert sum(len(r) for r in rounds) == sum(len(c.turns) for c in meld[:20])
    for r, batch in enumerate(rounds):
        assert all(q.turn.turn_id == q.context[-1].turn_id + 1 if q.context else True for q in batch)
        assert all(len(q.context) <= r for q in batch)


def test_rows_are_timed_in_turns_and_each_reports_its_fastest_timing():
    """`bench engine` reads ratios of rows timed on engines started at different moments: every
    row is timed once before any row is timed again, and a row's slow first timing (a fresh
    engine's first batches) does not stand."""
    calls: list[str] = []
    seen = {"bare": iter([(10.0, 0.5), (20.0, 0.4), (15.0, 0.5)]), "adapter": iter([(5.0, 0.5), (19.0, 0.5), (18.0, 0.5)])}

    def row(name):
        def run():
            calls.append(name)
            return next(seen[name])
        return run

    best, timings = time_rows({"bare": row("bare"), "adapter": row("adapter")}, 3)
    assert calls == ["bare", "adapter"] * 3
    assert best == {"bare": (20.0, 0.4), "adapter": (19.0, 0.5)}
    assert timings == {"bare": [10.0, 20.0, 15.0], "adapter": [5.0, 19.0, 18.0]}


def test_a_paired_ratio_compares_rows_within_each_round():
    """Round 2 ran slow for both rows (the machine busy): the best-of ratio mixes round 1's bare
    timing with round 3's adapter timing (19.0 / 20.0); pairing by round reads 1.0, 0.95, 1.2."""
    bare, adapter = [20.0, 10.0, 15.0], [20.0, 9.5, 18.0]
    assert paired_ratio(adapter, bare) == 1.0
    assert paired_ratio(bare, bare) == 1.0
    assert paired_ratio([1.0, 3.0], [2.0, 2.0]) == 1.0  # even count: the mean of the middle two
