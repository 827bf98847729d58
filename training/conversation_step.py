"""Training in one pass per conversation, for the conversation prompt (`prompt: conversation`).

The conversation prompt of turn k + 1 is the prompt of turn k plus one line and its slot as long as
the window has not moved (`pipeline.core.context.window_start`), so consecutive turns' prompts
merge into one `Segment`: the longest of them, with every member's head at the end of its own slot.
Causal attention sees exactly each turn's own prompt there, so one forward pass over the segment
gives every member the next-token distribution the engine serves for it (checked against the
per-turn computation in `tests/test_fast_training.py`). A window move starts a new segment.

Labels of several tokens stay exact with **extension positions**: for each member and each proper
non-empty prefix of a label (a non-root node of the label trie) the node's tokens are appended
after the segment, at the position ids they would have after that member's slot, attending only to
the member's own prompt (the segment up to its slot) and to the earlier tokens of the same
extension. Their last position gives the distribution of the node's children, as the per-turn
row `prompt + node` does. Single-token label sets (all of ours with SmolLM2 and Gemma 3) need none.

As in the fast step, the instruction prefix shared by a label set's segments runs once per batch
(with gradients) and, with LoRA on the top layers only, the frozen layers' outputs are computed once
per segment and reused every epoch. Objective: `label_ce` only (the `lm` loss is per turn: `plain`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.prompter import LabelSpace
from training.batch_loss import BatchLoss, _common_prefix
from training.objectives import Example


@dataclass(frozen=True)
class Segment:
    """Consecutive turns whose prompts extend one another: the longest prompt's ids, the member
    examples (indices, in order) and each member's head (the last position of its prompt)."""

    ids: tuple[int, ...]
    members: tuple[int, ...]
    heads: tuple[int, ...]
    label_set: str


def conversation_segments(examples: Sequence[Example]) -> list[Segment]:
    """Merge consecutive examples whose prompt ids extend the previous one's (exact by construction:
    a member's prompt is a prefix of the segment, and causal attention sees only that prefix)."""
    segments: list[Segment] = []
    ids: tuple[int, ...] = ()
    members: list[int] = []
    heads: list[int] = []
    label_set = ""
    for i, example in enumerate(examples):
        prompt = example.prompt_ids
        if members and example.label_set == label_set and len(prompt) > len(ids) and prompt[: len(ids)] == ids:
            ids = prompt
        else:
            if members:
                segments.append(Segment(ids, tuple(members), tuple(heads), label_set))
            ids, members, heads, label_set = prompt, [], [], example.label_set
        members.append(i)
        heads.append(len(prompt) - 1)
    if members:
        segments.append(Segment(ids, tuple(members), tuple(heads), label_set))
    return segments


@dataclass(frozen=True)
class _Layout:
    """A segment as the step computes it, after the shared prefix: tokens (the segment's own, then
    the extensions), their position ids, what each extension sees, and the heads in objective order."""

    tokens: tuple[int, ...]
    positions: tuple[int, ...]
    own: int  # how many of `tokens` are the segment's own (the rest are extensions)
    extensions: tuple[tuple[int, int, int], ...]  # (first token, length, last visible own token)
    heads: tuple[int, ...]  # per member, per trie query point (root first), as `label_log_scores` reads them


def _layout(segment: Segment, skip: int, space: LabelSpace) -> _Layout:
    tokens = list(segment.ids[skip:])
    positions = list(range(skip, len(segment.ids)))
    own = len(tokens)
    extensions, heads = [], []
    for head in segment.heads:
        for node in space.trie.query_points:
            if not node:
                heads.append(head - skip)
                continue
            start = len(tokens)
            tokens.extend(node)
            positions.extend(range(head + 1, head + 1 + len(node)))
            extensions.append((start, len(node), head - skip))
            heads.append(start + len(node) - 1)
    return _Layout(tuple(tokens), tuple(positions), own, tuple(extensions), tuple(heads))


class ConversationBatchLoss(BatchLoss):
    """`label_ce` over every turn of a batch of segments, one forward pass per segment."""

    def __init__(self, *args: Any, split: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.objective != "label_ce":
            raise ConfigError(f"objective: the conversation step computes label_ce only, got {self.objective!r} "
                              "(optim.step: plain computes lm per turn)")
        from training.prefix_runner import PrefixRunner

        self.runner = PrefixRunner(self.model, split)
        self.prefixes: dict[str, Any] = {}
        self.segments: list[Segment] = []
        self.layouts: list[_Layout] = []
        self.lower: list[Any] = []

    def prepare(self, examples: Sequence[Example], log: Callable[[str], None]) -> None:
        self.examples = list(examples)
        self.segments = conversation_segments(self.examples)
        shared: dict[str, tuple[int, ...]] = {}
        first_head: dict[str, int] = {}
        for seg in self.segments:
            seen = shared.get(seg.label_set)
            shared[seg.label_set] = seg.ids[:-1] if seen is None else _common_prefix(seen, seg.ids[:-1])
            first_head[seg.label_set] = min(first_head.get(seg.label_set, seg.heads[0]), seg.heads[0])
        # Every head must lie after the shared prefix (a batch of one segment shares all of it).
        shared = {name: ids[: first_head[name]] for name, ids in shared.items()}
        self.model.eval()  # no dropout in the frozen part; the loop sets train mode again
        self.prefixes = {name: self.runner.prefix_state(ids) for name, ids in shared.items()}
        self.layouts = [_layout(seg, len(self.prefixes[seg.label_set].ids), self.spaces[seg.label_set])
                        for seg in self.segments]
        self.lower = []
        if self.runner.split:
            self._cache_lower_layers(log)

    @property
    def units(self) -> int:
        return len(self.segments)

    def members(self, unit: int) -> tuple[int, ...]:
        return self.segments[unit].members

    def group(self, unit: int) -> str:
        return self.segments[unit].label_set

    def computed_length(self, index: int) -> int:
        return len(self.layouts[index].tokens)

    def head_logits(self, batch: Sequence[int]) -> tuple[Any, int]:
        import torch

        label_set = self.segments[batch[0]].label_set
        prefix = self.prefixes[label_set]
        layouts = [self.layouts[u] for u in batch]
        if self.lower:
            inputs = [self.lower[u] for u in batch]
        else:
            inputs = self.runner.input_states([lay.tokens for lay in layouts])
        allowed, positions = self._pattern(layouts)
        hidden = self.runner.forward_masked(prefix, inputs, allowed, positions)
        device = hidden.device
        which = [k for k, lay in enumerate(layouts) for _ in lay.heads]
        where = [h for lay in layouts for h in lay.heads]
        heads = hidden[torch.tensor(which, device=device), torch.tensor(where, device=device)]
        return self.runner.lm_head(heads), sum(len(lay.tokens) for lay in layouts)

    def _pattern(self, layouts: Sequence[_Layout]) -> tuple[Any, Any]:
        """(B, W, W) which token sees which, (B, W) position ids, for right-padded layouts."""
        import torch

        width = max(len(lay.tokens) for lay in layouts)
        device = self.runner.device
        allowed = torch.zeros(len(layouts), width, width, dtype=torch.bool, device=device)
        positions = torch.zeros(len(layouts), width, dtype=torch.long, device=device)
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        for b, lay in enumerate(layouts):
            allowed[b, : lay.own, : lay.own] = causal[: lay.own, : lay.own]
            for start, length, last in lay.extensions:
                allowed[b, start : start + length, : last + 1] = True
                allowed[b, start : start + length, start : start + length] = causal[:length, :length]
            pad = torch.arange(len(lay.tokens), width, device=device)
            allowed[b, pad, pad] = True  # padding sees itself only; nothing sees padding
            positions[b, : len(lay.tokens)] = torch.tensor(lay.positions, device=device)
            positions[b, len(lay.tokens):] = lay.positions[-1] if lay.positions else 0
        return allowed, positions

    def _cache_lower_layers(self, log: Callable[[str], None], chunk_tokens: int = 4096) -> None:
        order = sorted(range(len(self.segments)), key=self.computed_length)
        self.lower = [None] * len(self.segments)
        started, done = time.perf_counter(), 0
        total = sum(len(lay.tokens) for lay in self.layouts)
        last_log = started
        i = 0
        while i < len(order):
            # Chunks of similar length, one label set each, about `chunk_tokens` positions.
            label_set = self.segments[order[i]].label_set
            part = []
            while i < len(order) and (not part or (len(part) + 1) * self.computed_length(order[i]) <= chunk_tokens):
                if self.segments[order[i]].label_set != label_set:
                    break
                part.append(order[i])
                i += 1
            if not part:
                continue
            layouts = [self.layouts[u] for u in part]
            allowed, positions = self._pattern(layouts)
            states = self.runner.lower_states_masked(self.prefixes[label_set], [lay.tokens for lay in layouts],
                                                     allowed, positions)
            for u, state in zip(part, states, strict=True):
                self.lower[u] = state
            done += sum(len(lay.tokens) for lay in layouts)
            now = time.perf_counter()
            if i >= len(order) or now - last_log >= 30:
                eta = (now - started) / done * (total - done)
                log(f"frozen layers 0-{self.runner.split - 1}: {done}/{total} positions of {len(order)} "
                    f"conversation segments, {now - started:.0f} s, ETA {eta:.0f} s")
                last_log = now
