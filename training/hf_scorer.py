"""Label scoring with a transformers model (used for dev evaluation inside training).

The same computation as the engine's `scoring` mode: each label's sequence likelihood after the
prompt, from the label trie, normalised over the labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.predictions import LabelRequest, Prediction
from pipeline.prompter import Prompter


class TransformersScorer:
    """A `Classifier` over a (PEFT-wrapped) transformers causal LM."""

    def __init__(self, model: Any, prompter: Prompter, pad_id: int, batch_size: int = 16) -> None:
        self.model = model
        self.prompter = prompter
        self.pad_id = pad_id
        self.batch_size = batch_size

    def predict(self, requests: Sequence[LabelRequest]) -> list[Prediction]:
        import torch

        device = next(self.model.parameters()).device
        out: list[Prediction] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(requests), self.batch_size):
                chunk = requests[start : start + self.batch_size]
                prompts = [self.prompter.encode(self.prompter.build(r)) for r in chunk]
                spaces = [self.prompter.space(r.label_set) for r in chunk]
                seen: list[dict] = [{} for _ in chunk]
                queries = [(i, prefix) for i, s in enumerate(spaces) for prefix in s.trie.query_points]
                for q in range(0, len(queries), self.batch_size):
                    part = queries[q : q + self.batch_size]
                    seqs = [prompts[i] + list(prefix) for i, prefix in part]
                    width = max(map(len, seqs))
                    # Left padding puts every sequence's last token in the last column.
                    ids = torch.tensor([[self.pad_id] * (width - len(s)) + s for s in seqs], device=device)
                    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
                    positions = (mask.cumsum(-1) - 1).clamp(min=0)
                    with torch.no_grad():
                        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1, :]
                    logprobs = torch.log_softmax(logits.float(), dim=-1)
                    for row, (i, prefix) in enumerate(part):
                        children = spaces[i].trie.children[prefix]
                        seen[i][prefix] = {t: float(logprobs[row, t]) for t in children}
                out.extend(Prediction.from_probs(space.trie.probabilities(s), None) for space, s in zip(spaces, seen))
        finally:
            self.model.train(was_training)
        return out
