"""The heavy stages of batch labelling, as Ray Data callable classes (one instance per actor).

Both take and return pandas batches of manifest rows (see `pipeline.labelling.manifest`), and
never raise for one bad row: a row's trouble goes into its `error` column.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pipeline.core.errors import DialogueLLMError
from pipeline.core.predictions import LabelRequest
from pipeline.core.turns import Turn, VideoSegment
from pipeline.core.video_policy import VideoPolicy
from pipeline.labelling.manifest import output_columns
from workers.cpu_threads import torch_threads_for_cpu_actor
from workers.engine_config import EngineConfig
from workers.video.decoder import DecodeConfig

_NO_END = 1e9  # a segment without an end: the whole file (the decoder stops at its last frame)


class DescribeStage:
    """Video segments to descriptions, through the on-disk description cache. Only what `policy`
    allows is opened (as the stream worker: checked before the cache, again when opened)."""

    def __init__(self, describer: str, decode: DecodeConfig, cache_dir: str, options: dict | None = None,
                 policy: VideoPolicy | None = None) -> None:
        from pipeline.core.description_cache import DiskDescriptionCache
        from workers.video.segment_describer import SegmentDescriber

        self.policy = policy or VideoPolicy()
        self.worker = SegmentDescriber(describer, decode, self.policy, **(options or {}))
        self.cache = DiskDescriptionCache(cache_dir)

    def __call__(self, batch: Any) -> Any:
        from pipeline.core.description_cache import cache_key

        descriptions, errors = list(batch["_description"]), list(batch["error"])
        context_only = list(batch["_context_only"]) if "_context_only" in batch else [False] * len(batch)
        for i, (uri, start, end) in enumerate(zip(batch["_video_uri"], batch["_start"], batch["_end"])):
            if _text(descriptions[i]) or not _text(uri) or context_only[i]:  # a context-only row: never opened
                continue
            source = self.policy.decide(str(uri))
            if not source.allowed:
                errors[i] = f"video not described: {source.reason}"
                continue
            segment = VideoSegment(source.path or source.url, float(start), _NO_END if _missing(end) else float(end))
            key = cache_key(segment, self.worker.name, self.worker.version)
            found = self.cache.get(key)
            if found is None:
                result = self.worker.describe(segment)
                if result.description is None:
                    errors[i] = f"video not described: {result.error}"
                    continue
                found = result.description
                self.cache.put(key, found)
            descriptions[i] = found.text
        batch["_description"], batch["error"] = descriptions, errors
        return batch


class LabelStage:
    """Rows to labels with one `EmotionEngine` (the same engine, prompts and scoring as serve and eval),
    returned as the output file's columns. Rows marked `_context_only` (a speaker `label_speakers`
    leaves out) are not sent to the engine: null label, confidence and probabilities, `context_only` true."""

    def __init__(self, config: EngineConfig, label_set: str, raw_text: bool = False) -> None:
        torch_threads_for_cpu_actor()
        from pipeline.core.redaction import redactor
        from workers.engine import EmotionEngine

        self.engine = EmotionEngine(config)
        self.label_set = label_set
        self.redact = None if raw_text else redactor(config.redaction)

    def __call__(self, batch: Any) -> Any:
        context_only = [bool(x) for x in batch["_context_only"]] if "_context_only" in batch else [False] * len(batch)
        wanted = [i for i, skip in enumerate(context_only) if not skip]
        requests = label_requests(batch, self.label_set)
        answers: list[Any] = [None] * len(batch)
        for i, answer in zip(wanted, self.engine.predict_each([requests[i] for i in wanted]) if wanted else []):
            answers[i] = answer
        labels, confidences, probs, errors = [], [], [], list(batch["error"])
        for i, answer in enumerate(answers):
            if answer is None:  # context only: no emotion asked for
                labels.append(None), confidences.append(None), probs.append(None)
                continue
            if isinstance(answer, DialogueLLMError):
                labels.append(None), confidences.append(None), probs.append(None)
                errors[i] = "; ".join(e for e in (errors[i], f"not labelled: {answer}") if e)
                continue
            labels.append(answer.label)
            confidences.append(answer.confidence)
            probs.append(json.dumps(answer.probs))
        batch["label"], batch["confidence"], batch["probs"], batch["error"] = labels, confidences, probs, errors
        batch["description"] = batch["_description"]
        batch["context_only"] = context_only
        # The output columns are made here, in the actor's call, not in a task of their own: on a
        # small machine every extra task takes a core from the engine.
        return output_columns(batch, self.redact)


def label_requests(batch: Any, label_set: str) -> list[LabelRequest]:
    """The engine requests for a batch of manifest rows (their context already gathered)."""
    return [
        LabelRequest(Turn(str(c), int(t), str(s), str(x), None, _text(d)),
                     tuple(Turn(str(c), int(i), who, text, None, d) for i, who, text, d in json.loads(ctx)), label_set)
        for c, t, s, x, d, ctx in zip(batch["_conversation_id"], batch["_turn_id"], batch["_speaker"],
                                      batch["_text"], batch["_description"], batch["_context"])
    ]


def _text(value: Any) -> str | None:
    """A non-empty string, or None (pandas gives NaN or None for a missing value)."""
    return value if isinstance(value, str) and value else None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
