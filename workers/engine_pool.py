"""`EnginePool`: N engine actors in Ray, each batch to the least busy, at most a few in flight each.

One GPU per engine where the cluster has GPUs, CPUs otherwise; the same code either way. Joins
the Ray cluster at `ray_address` (or `$RAY_ADDRESS`), else starts a local one.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pipeline.core.config_fields import field_help
from pipeline.core.errors import ConfigError, DialogueLLMError, one_line
from pipeline.core.predictions import LabelRequest, Prediction
from workers.engine_config import EngineConfig

log = logging.getLogger("dialoguellm.engines")

@dataclass(frozen=True)
class PoolConfig:
    """How many engines, what each holds in Ray, and how many batches each may have in flight.

    `gpus_per_engine` None: 1 when the cluster has GPUs, else 0 (CPU engines).
    """

    engines: int = field(default=1, metadata={"help": "engine actors (one GPU each on GPU nodes)"})
    max_inflight_per_engine: int = field(default=2, metadata=field_help("batches in flight per engine",
                                                                        flag="--max-inflight"))
    gpus_per_engine: float | None = field(default=None, metadata={
        "help": "GPUs per engine (default: 1 when the Ray cluster has GPUs, else 0)"})
    cpus_per_engine: float = field(default=1.0, metadata={"help": "CPUs Ray reserves per engine actor"})
    ray_address: str | None = field(default=None, metadata={
        "help": "join this Ray cluster (default: $RAY_ADDRESS, else start a local one)"})
    startup_timeout_s: float = field(default=120.0, metadata={
        "help": "fail when actors are not placed and started within this many seconds"})
    max_restarts: int = field(default=3, metadata={"help": "times Ray restarts an engine that died"})
    engine_timeout_s: float = field(default=60.0, metadata=field_help(
        "an engine call unanswered after this many seconds, plus --engine-timeout-per-turn-s for each turn of "
        "its batch, marks the engine hung: it is killed and restarted, and the batch retried"))
    engine_timeout_per_turn_s: float = field(default=1.0, metadata=field_help(
        "seconds added to an engine call's deadline per turn of its batch (generous on a CPU)"))
    health_timeout_s: float = field(default=30.0, metadata=field_help(
        "after an engine error, the engine takes no more work until it labels a probe turn within this many "
        "seconds; otherwise it is killed and restarted"))

    def deadline_s(self, turns: int) -> float:
        """How long an engine may take for a batch of `turns`."""
        return self.engine_timeout_s + self.engine_timeout_per_turn_s * turns

    def __post_init__(self) -> None:
        if self.engines <= 0:
            raise ConfigError(f"engines: must be > 0, got {self.engines}")
        if self.max_inflight_per_engine <= 0:
            raise ConfigError(f"max_inflight_per_engine: must be > 0, got {self.max_inflight_per_engine}")
        if self.gpus_per_engine is not None and self.gpus_per_engine < 0:
            raise ConfigError(f"gpus_per_engine: must be ≥ 0, got {self.gpus_per_engine}")
        if self.cpus_per_engine < 0:
            raise ConfigError(f"cpus_per_engine: must be ≥ 0, got {self.cpus_per_engine}")
        for name in ("startup_timeout_s", "engine_timeout_s", "health_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.engine_timeout_per_turn_s < 0:
            raise ConfigError(f"engine_timeout_per_turn_s: must be ≥ 0, got {self.engine_timeout_per_turn_s}")


class EnginePool:
    """Starts the actors and waits until every engine is up (a start failure raises here)."""

    def __init__(self, engine_config: EngineConfig, config: PoolConfig = PoolConfig()) -> None:
        import ray

        from workers.actor_set import ActorSet, ensure_ray
        from workers.engine_actor import EngineActor

        ensure_ray(config.ray_address)
        gpus = config.gpus_per_engine
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        self.config = config
        engine_config = engine_config.resolved()
        self.engine_config = engine_config
        self.context_turns = engine_config.context_turns
        self.prompt_tokens = 0  # since start, over every engine: all, and those the prefix caches served
        self.cached_tokens = 0
        self.actors = ActorSet(EngineActor, (engine_config,), config.engines,
                               dict(num_cpus=config.cpus_per_engine, num_gpus=gpus,
                                    max_concurrency=config.max_inflight_per_engine + 4),
                               max_restarts=config.max_restarts, kind="engine",
                               health=("health", config.health_timeout_s))
        try:
            infos = self.actors.first_answers("info", config.startup_timeout_s)
        except ray.exceptions.RayActorError as e:
            self.shutdown()
            raise DialogueLLMError(f"engine failed to start: {e}") from None
        self.model: str = infos[0]["model"]
        self.adapters: list[str] = infos[0]["adapters"]
        self.default_adapter: str | None = infos[0]["default_adapter"]
        self.merged: bool = infos[0]["merged"]
        self.lora: bool = infos[0]["lora"]
        # On a CPU an engine whose only adapter is its default serves it merged (`EngineConfig`).
        self._can_merge = bool(infos[0].get("cpu")) and engine_config.merge_default_adapter \
            and not engine_config.enable_lora
        self._lora_asked = engine_config.enable_lora
        # What every engine serves (name -> folder), and how many times that changed: an engine
        # back from a restart is brought up to date before it takes work (`ActorSet.on_ready`).
        self.served: dict[str, str] = dict(engine_config.adapters)
        self._served_version = 0
        self._largest_batch = 0  # turns in the largest batch handed to an engine (what a change may wait behind)
        self.actors.on_ready = self._bring_up_to_date

    @property
    def adapter_paths(self) -> dict[str, str]:
        """The folder of every adapter the engines serve."""
        return dict(self.served)

    async def serve(self, adapters: dict[str, str], default: str | None) -> None:
        """Every engine serves exactly `adapters` (name -> folder, checked by the caller) with
        `default`. Where engines must change how they serve, they restart one at a time (the others
        keep labelling; with a single engine its batches wait, unacknowledged, for it):

        - into LoRA serving, when they cannot take an adapter added (started without LoRA, or serving
          their default merged into the model on a CPU: a canary needs two adapters side by side);
        - back to merged serving on a CPU, when one adapter is left and it is the default (LoRA costs
          several times the merged model's time there): each engine first builds the merged model
          beside its work, then restarts from it.
        Otherwise each engine loads and drops LoRAs between two batches."""
        adapters = dict(adapters)
        if adapters == self.served and default == self.default_adapter:
            return
        merge = self._can_merge and default is not None and list(adapters) == [default]
        if merge:
            restart = not self.merged or self.served != adapters
            config = replace(self.engine_config, adapters=adapters, default_adapter=default, enable_lora=False)
        else:
            restart = self.merged or (not self.lora and bool(adapters))
            config = replace(self.engine_config, adapters=adapters, default_adapter=default,
                             enable_lora=self.lora or restart or self._lora_asked)
        before = (self.served, self.default_adapter, self.engine_config)
        self.served, self.default_adapter = adapters, default
        self._served_version += 1
        self.engine_config = config
        self.actors.args = (config,)  # what a replaced engine starts from
        timeout_s = max(self.config.startup_timeout_s, 600.0)
        try:
            for i in range(len(self.actors.actors)):
                if restart:
                    if merge and self.actors.is_alive(i):
                        await self._call(i, "prepare_merged", adapters[default], timeout_s=timeout_s)
                    await self.actors.restart(i, (config,), timeout_s)
                    self.merged, self.lora = merge, not merge
                elif self.actors.is_alive(i):
                    engine = self.actors.actors[i]
                    try:
                        await self._bring_up_to_date(i)
                    except Exception as e:
                        if self.actors.actors[i] is engine:
                            raise  # this engine failed the change itself: refused
                        # Replaced while the change waited behind its batches (killed as hung): not a
                        # refusal; the new engine is brought up to date before it takes work (`on_ready`).
                        log.warning(f"engine {i} was replaced while the change waited for it; the new one "
                                    "gets it before it takes work", extra={"error": one_line(e)})
                # else: out of rotation; brought up to date before it is back (`ActorSet.on_ready`)
        except BaseException as e:
            # An engine refused (a weights file that does not load): every engine back to what it served.
            log.error("engines could not serve the change, undoing it", extra={"error": one_line(e)})
            self.served, self.default_adapter, self.engine_config = before
            self._served_version += 1
            self.actors.args = (replace(self.engine_config, enable_lora=self.lora or self._lora_asked),)
            for i in range(len(self.actors.actors)):
                if self.actors.is_alive(i):
                    try:
                        await self._bring_up_to_date(i)
                    except Exception:  # noqa: BLE001 - its health check or a restart deals with it
                        pass
            raise
        self.adapters = list(adapters)
        log.warning("engines serve the change", extra={
            "adapters": ",".join(adapters), "default": default, "serving": "merged" if self.merged else "lora",
            "restarted": restart})

    async def _call(self, i: int, method: str, *args, timeout_s: float):
        ref = getattr(self.actors.actors[i], method).remote(*args)
        return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout_s)

    async def _bring_up_to_date(self, i: int) -> None:
        """Engine `i` serves `self.served` with the pool's default (again, if they changed meanwhile)."""
        while True:
            version = self._served_version
            # Queued behind the batches the engine holds (up to max_inflight_per_engine, each allowed its
            # deadline, per-turn allowance included), then loading a LoRA: a probe's time.
            await self._call(i, "serve", self.served, self.default_adapter, timeout_s=self._change_timeout_s())
            if version == self._served_version:
                return

    def _change_timeout_s(self) -> float:
        """How long a change may take on one engine: the batches ahead of it on the engine's thread,
        each allowed its deadline (`PoolConfig.deadline_s` of the largest batch seen), and a probe's time."""
        behind = self.config.max_inflight_per_engine * self.config.deadline_s(self._largest_batch)
        return behind + self.config.health_timeout_s

    @property
    def accepted_adapters(self) -> list[str]:
        """Adapter names a request may ask for: those served, and "base" for the bare model."""
        from workers.adapters import BASE_MODEL

        return [*self.adapters, BASE_MODEL]

    @property
    def capacity(self) -> int:
        """Batches the pool takes at once; a reader waits for a free slot before reading more."""
        return self.config.engines * self.config.max_inflight_per_engine

    @property
    def alive(self) -> int:
        """Engines in rotation (a dead one is out until Ray has restarted it)."""
        return self.actors.alive

    @property
    def queue_depth(self) -> int:
        """Batches handed to engines and not yet answered."""
        return self.actors.queue_depth

    def home(self, conversation_id: str) -> int:
        """The engine a conversation's turns go to while it is alive and not full: the one whose
        prefix cache holds the conversation's earlier prompts."""
        return zlib.crc32(conversation_id.encode("utf-8")) % len(self.actors.actors)

    async def label(self, requests: Sequence[LabelRequest]) -> list[Prediction | DialogueLLMError]:
        """Label a batch, each conversation's turns on its home engine (the least busy live one
        when that one is dead, or full: holding as many calls as the whole pool takes at once;
        another if it dies meanwhile). A call past its deadline raises `ActorTimeout` and its
        engine, taken as hung, is restarted."""
        homes: dict[int, list[int]] = {}
        for k, request in enumerate(requests):
            homes.setdefault(self.home(request.turn.conversation_id), []).append(k)
        parts = await asyncio.gather(*(self._label_on(home, [requests[k] for k in ks]) for home, ks in homes.items()))
        answers: list[Prediction | DialogueLLMError | None] = [None] * len(requests)
        for ks, part in zip(homes.values(), parts, strict=True):
            for k, answer in zip(ks, part, strict=True):
                answers[k] = answer
        return answers

    async def _label_on(self, home: int, requests: list[LabelRequest]) -> list[Prediction | DialogueLLMError]:
        self._largest_batch = max(self._largest_batch, len(requests))
        batch = await self.actors.call("label", requests, timeout_s=self.config.deadline_s(len(requests)),
                                       prefer=home, full_at=self.capacity)
        self.prompt_tokens += batch.prompt_tokens
        self.cached_tokens += batch.cached_tokens
        return batch.predictions

    def abandon_waiting(self) -> None:
        """Calls waiting for an engine to come back give up (see `ActorSet.abandon_waiting`)."""
        self.actors.abandon_waiting()

    def shutdown(self) -> None:
        self.actors.shutdown()
