"""`ActorSet`: Ray actors of one kind, each call sent to the least busy; shared by the pools."""

from __future__ import annotations

from typing import Any


def ensure_ray(address: str | None = None) -> None:
    """Join the cluster at `address` (or `$RAY_ADDRESS`); without one, start a local Ray."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=True)


class ActorSet:
    """`count` actors of `cls` built with `args`, Ray options `options` (num_cpus, num_gpus, ...)."""

    def __init__(self, cls: type, args: tuple, count: int, options: dict[str, Any],
                 ray_address: str | None = None) -> None:
        import ray

        ensure_ray(ray_address)
        remote = ray.remote(**options)(cls)
        self.actors = [remote.remote(*args) for _ in range(count)]
        self._inflight = [0] * count

    @property
    def queue_depth(self) -> int:
        """Calls sent and not yet answered."""
        return sum(self._inflight)

    async def call(self, method: str, *args: Any) -> Any:
        """`method(*args)` on the least busy actor."""
        i = min(range(len(self.actors)), key=self._inflight.__getitem__)
        self._inflight[i] += 1
        try:
            return await getattr(self.actors[i], method).remote(*args)
        finally:
            self._inflight[i] -= 1

    def first_answers(self, method: str, timeout_s: float = 600) -> list[Any]:
        """`method()` of every actor, waited for (start-up failures raise here, and so does a
        cluster that cannot place the actors within `timeout_s`)."""
        import ray

        from pipeline.errors import DialogueLLMError

        try:
            return ray.get([getattr(a, method).remote() for a in self.actors], timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise DialogueLLMError(
                f"{len(self._inflight)} actor(s) not started within {timeout_s:.0f} s: the Ray cluster lacks the "
                f"resources they ask for (free now: {ray.available_resources()})") from None

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
