"""The pure core: data model, labels, prompts, context, parsing, metrics and message schemas.

Nothing here imports Ray, Redis, vLLM, torch or transformers at module level; every other layer
(workers, training, the flows, the commands) builds on it, never the other way round.
"""
