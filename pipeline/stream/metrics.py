"""The worker's Prometheus metrics, in a registry of its own (several workers may share a process)."""

from __future__ import annotations

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class WorkerMetrics:
    """Turns labelled, latency, batch sizes, pending entries, dead letters, engine queue depth."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self._tokens = (0, 0)  # prompt tokens since start: all, and those served from the cache
        kw = dict(registry=self.registry)
        self.labelled = Counter("dialoguellm_turns_labelled_total", "Turns labelled and written", **kw)
        self.context_only = Counter("dialoguellm_turns_context_only_total",
                                    "Turns of speakers --label-speakers leaves out, written as context only "
                                    "(no emotion)", **kw)
        self.latency = Histogram("dialoguellm_latency_seconds", "From the input entry's id time to the output write",
                                 buckets=LATENCY_BUCKETS_S, **kw)
        self.batch_size = Histogram("dialoguellm_batch_size", "Entries per micro-batch", buckets=BATCH_BUCKETS, **kw)
        self.pending = Gauge("dialoguellm_pending_entries", "Entries delivered to the group and not acknowledged",
                             **kw)
        self.dead_lettered = Counter("dialoguellm_dead_lettered_total", "Entries written to the dead-letter stream",
                                     **kw)
        self.retried = Counter("dialoguellm_retried_total", "Entries left pending after a failed attempt", **kw)
        self.claimed = Counter("dialoguellm_claimed_total", "Entries taken over from idle consumers", **kw)
        self.engines_alive = Gauge("dialoguellm_engines_alive", "Engine actors in rotation", **kw)
        self.queue_depth = Gauge("dialoguellm_engine_queue_depth", "Batches handed to engines, not yet answered",
                                 **kw)
        self.videos_described = Counter("dialoguellm_videos_described_total",
                                        "Video segments described (cache misses)", **kw)
        self.video_errors = Counter("dialoguellm_video_errors_total",
                                    "Turns whose video could not be described (labelled from text alone)", **kw)
        self.videos_refused = Counter("dialoguellm_videos_refused_total",
                                      "Turns whose video URI the video policy refused (never opened), by reason",
                                      ["reason"], **kw)
        self.video_timeouts = Counter("dialoguellm_video_timeouts_total",
                                      "Batches whose describing overran its deadline (labelled without "
                                      "descriptions)", **kw)
        self.prompt_tokens = Counter("dialoguellm_prompt_tokens_total", "Prompt tokens sent to the engines", **kw)
        self.cached_prompt_tokens = Counter("dialoguellm_prompt_tokens_cached_total",
                                            "Prompt tokens the engines' prefix caches served (not computed)", **kw)
        self.cached_ratio = Gauge("dialoguellm_prompt_tokens_cached_ratio",
                                  "Share of prompt tokens the prefix caches served, since the worker started", **kw)
        self.turns_by_adapter = Counter("dialoguellm_turns_by_adapter_total",
                                        "Turns labelled and written, by the adapter that labelled them (base: none)",
                                        ["adapter"], **kw)
        self.control_refused = Counter("dialoguellm_control_refused_total",
                                       "Control messages malformed or refused (logged, skipped)", **kw)
        self.redis_errors = Counter("dialoguellm_redis_errors_total", "Redis calls that failed and were retried",
                                    **kw)

    def count_prompt_tokens(self, prompt_tokens: int, cached_tokens: int) -> None:
        """Add a batch's prompt tokens (all, and those served from the cache) and update the ratio."""
        self.prompt_tokens.inc(prompt_tokens)
        self.cached_prompt_tokens.inc(cached_tokens)
        self._tokens = (self._tokens[0] + prompt_tokens, self._tokens[1] + cached_tokens)
        if self._tokens[0]:
            self.cached_ratio.set(self._tokens[1] / self._tokens[0])

    def serve(self, port: int) -> None:
        """Expose /metrics on `port` (0 picks a free one)."""
        from prometheus_client import start_http_server

        start_http_server(port, registry=self.registry)
