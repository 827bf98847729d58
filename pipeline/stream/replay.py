"""Put dead-lettered entries back on the input stream once what rejected them is fixed.

Each entry's original bytes go back as a new input entry (field `payload`, plus `replay_of`: the
first entry's id) and leave the dead-letter stream in the same MULTI/EXEC, so a replay that
stops half-way never puts an entry back twice. The label of a replayed entry carries the new
entry's id as its `source_id`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.core.wire import PAYLOAD, DeadLetter, as_text


@dataclass(frozen=True)
class Replayed:
    dead_id: str
    source_id: str
    new_id: str | None  # None: a dry run
    error: str


def replay_dead_letters(redis: Any, dead_stream: str, in_stream: str, keep: Callable[[DeadLetter], bool],
                        dry_run: bool = False, count: int = 100) -> list[Replayed]:
    """Replay every dead letter `keep` accepts (oldest first); returns what was (or would be) replayed."""
    done: list[Replayed] = []
    after = "-"
    while True:
        # Exclusive start: the previous page's last entry may have been replayed (deleted) already.
        entries = redis.xrange(dead_stream, min=after, count=count)
        if not entries:
            return done
        for entry_id, fields in entries:
            entry_id = as_text(entry_id)
            letter = DeadLetter.decode(fields)
            if not keep(letter):
                continue
            new_id = None
            if not dry_run:
                pipe = redis.pipeline(transaction=True)
                pipe.xadd(in_stream, {PAYLOAD: letter.payload, "replay_of": letter.source_id})
                pipe.xdel(dead_stream, entry_id)
                new_id = as_text(pipe.execute()[0])
            done.append(Replayed(entry_id, letter.source_id, new_id, letter.error))
        after = f"({entry_id}"
