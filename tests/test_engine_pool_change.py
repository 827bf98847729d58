"""`EnginePool.serve`, a rollout change, when an engine fails or is replaced while the change waits
for it (no Ray, no engine: the pool's actors are stand-ins)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from workers.engine_pool import EnginePool, PoolConfig


@dataclass(frozen=True)
class Config:
    adapters: dict = field(default_factory=dict)
    default_adapter: str | None = None
    enable_lora: bool = True


class Actors:
    def __init__(self, count: int) -> None:
        self.actors = [object() for _ in range(count)]
        self.alive = [True] * count
        self.args = None

    def is_alive(self, i: int) -> bool:
        return self.alive[i]


def lora_pool(engines: int = 2) -> EnginePool:
    """Engines serving `default` and `v2` through LoRA: making v2 the default restarts nothing."""
    pool = EnginePool.__new__(EnginePool)
    served = {"default": "/a/default", "v2": "/a/v2"}
    pool.config, pool.engine_config = PoolConfig(), Config(dict(served), "default")
    pool.actors = Actors(engines)
    pool.served, pool.default_adapter, pool._served_version = dict(served), "default", 0
    pool.adapters, pool.merged, pool.lora, pool._can_merge, pool._lora_asked = list(served), False, True, False, False
    return pool


def test_an_engine_replaced_while_the_change_waits_for_it_does_not_refuse_the_change():
    pool = lora_pool()
    asked = []

    async def bring_up_to_date(i: int) -> None:
        asked.append((i, pool.default_adapter))
        if i == 0 and len(asked) == 1:
            # Its batch overran the deadline: killed as hung and replaced (`ActorSet.replace`), so
            # the call queued behind the batch dies with it.
            pool.actors.actors[0], pool.actors.alive[0] = object(), False
            raise RuntimeError("ActorDiedError: The actor died unexpectedly before finishing this task.")

    pool._bring_up_to_date = bring_up_to_date
    asyncio.run(pool.serve({"default": "/a/default", "v2": "/a/v2"}, "v2"))
    assert (pool.default_adapter, pool.engine_config.default_adapter) == ("v2", "v2")
    assert pool.actors.args == (pool.engine_config,)  # what the replacement (and its on_ready) serve
    assert asked == [(0, "v2"), (1, "v2")]


def test_an_engine_that_fails_the_change_itself_refuses_it_and_every_engine_goes_back():
    pool = lora_pool()
    asked = []

    async def bring_up_to_date(i: int) -> None:
        asked.append((i, pool.default_adapter))
        if len(asked) == 1:
            raise RuntimeError("the adapter does not load")

    pool._bring_up_to_date = bring_up_to_date
    with pytest.raises(RuntimeError, match="does not load"):
        asyncio.run(pool.serve({"default": "/a/default", "v2": "/a/v2"}, "v2"))
    assert pool.default_adapter == "default" and pool.engine_config.default_adapter == "default"
    assert asked == [(0, "v2"), (0, "default"), (1, "default")]


def test_a_change_waits_as_long_as_the_batches_ahead_of_it_may_take():
    """A change runs on the engine's thread after the batches it holds (up to max_inflight_per_engine),
    each allowed its deadline with the per-turn allowance: a slow LoRA batch on a busy CPU is not a refusal."""
    pool = lora_pool()
    pool.config = PoolConfig(engine_timeout_s=60, engine_timeout_per_turn_s=10, max_inflight_per_engine=2,
                             health_timeout_s=30)
    pool._largest_batch = 32
    waited = []

    async def call(i, method, *args, timeout_s):
        waited.append((i, method, timeout_s))

    pool._call = call
    asyncio.run(pool._bring_up_to_date(1))
    assert waited == [(1, "serve", 2 * (60 + 10 * 32) + 30)]
