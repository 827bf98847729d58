"""`ActorSet`: Ray actors of one kind with health tracking; shared by the engine and video pools.

Each call goes to the least busy live actor (ties in turn). An actor whose call fails because it
died is taken out of rotation and the call is retried at once on a live one; Ray restarts the
actor (`max_restarts`) and a probe puts it back once it answers. While no actor is alive, calls
wait for one instead of failing: what they carry stays unacknowledged upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.core.errors import DialogueLLMError, one_line

log = logging.getLogger("dialoguellm.actors")
PROBE_INTERVAL_S = 1.0
STARTUP_LOG_INTERVAL_S = 10.0


class NoActorsError(DialogueLLMError):
    """A call failed on every actor it was sent to."""


class ActorTimeout(DialogueLLMError):
    """A call overran its deadline: its actor was taken as hung and replaced."""


_started_here = False  # a local Ray this process started: its resources never grow


def ensure_ray(address: str | None = None) -> None:
    """Join the cluster at `address` (or `$RAY_ADDRESS`); without one, start a local Ray."""
    import ray

    from pipeline.core import envs
    from pipeline.core.logs import library_log_level

    global _started_here
    if not ray.is_initialized():
        local = not (address or envs.read("RAY_ADDRESS"))
        if local:
            # Ray runs its workers at nice 15 by default; a CPU engine's threads, bound to every
            # core, then stall whenever Ray's own processes run. Its actors are the work here.
            envs.set_default("RAY_worker_niceness", "0")
        # The level the command set (`pipeline.core.logs.quiet_libraries`): below INFO, neither Ray's
        # own lines nor what its actors print (vLLM's loading bars, torch's warnings) reach the
        # terminal; they stay in Ray's session logs, and errors still raise here.
        level = library_log_level()
        logging.getLogger("ray").setLevel(level)
        ray.init(address=address, include_dashboard=False, log_to_driver=level <= logging.INFO,
                 logging_level=level)
        _started_here = local


class ActorSet:
    """`count` actors of `cls` built with `args`, Ray options `options` (num_cpus, num_gpus, ...)."""

    def __init__(self, cls: type, args: tuple, count: int, options: dict[str, Any],
                 ray_address: str | None = None, max_restarts: int = 3, kind: str = "actor",
                 health: tuple[str, float] | None = None) -> None:
        """`health`: (method, seconds): after a call raised, the actor is out of rotation until
        `method()` answers within the seconds; one that does not is killed and replaced."""
        import ray

        self._health = health

        ensure_ray(ray_address)
        self.kind = kind
        self.asks = {k: v for k, v in (("CPU", options.get("num_cpus", 1)), ("GPU", options.get("num_gpus", 0)))
                     if v}
        if _started_here:
            _check_fits(kind, count, self.asks, self._held_elsewhere())
        remote = ray.remote(max_restarts=max_restarts, **options)(cls)
        self._remote, self._args = remote, args
        self.actors = [remote.remote(*args) for _ in range(count)]
        self._inflight = [0] * count
        self._alive = [True] * count
        self._next = 0
        self._abandons = 0  # how many times waiting calls were let go
        self._probes: dict[int, asyncio.Task] = {}
        self._checks: dict[int, asyncio.Task] = {}
        self._restarting: set[int] = set()
        # Called with an actor's index before it goes back in rotation (after Ray restarted it, a
        # replacement started, or its health check passed): brings it up to what the set serves now.
        self.on_ready: Callable[[int], Awaitable[None]] | None = None
        ActorSet._held.append(self)

    _held: list[ActorSet] = []  # the sets of this process, whose resources the next set cannot use

    @property
    def queue_depth(self) -> int:
        """Calls sent and not yet answered."""
        return sum(self._inflight)

    @property
    def args(self) -> tuple:
        """The arguments a new actor is built from (a replacement, a restart)."""
        return self._args

    @args.setter
    def args(self, args: tuple) -> None:
        self._args = args

    def is_alive(self, i: int) -> bool:
        """Whether actor `i` is in rotation."""
        return self._alive[i]

    @property
    def alive(self) -> int:
        """Actors in rotation."""
        return sum(self._alive)

    async def call(self, method: str, *args: Any, timeout_s: float | None = None, prefer: int | None = None,
                   full_at: int | None = None) -> Any:
        """`method(*args)` on the least busy live actor; retried at once on another if the actor
        dies under it, waited for while none is alive. Raises `NoActorsError` when it failed on
        as many actors as there are (a call that kills whatever runs it). With `timeout_s`, a
        call the actor has not answered by then raises `ActorTimeout` and the actor, taken as
        hung, is killed and replaced by a new one (in rotation once it answers). With `prefer`, that
        actor takes the call while it is alive and has fewer than `full_at` calls in hand (affinity:
        it holds what the call needs cached); otherwise the least busy live one does."""
        import ray

        failures = 0
        while True:
            i = await self._pick(prefer, full_at)
            self._inflight[i] += 1
            try:
                ref = getattr(self.actors[i], method).remote(*args)
                if timeout_s is None:
                    return await ref
                try:
                    return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout_s)
                except asyncio.TimeoutError:
                    self.replace(i, f"{method} took longer than {timeout_s:g} s")
                    raise ActorTimeout(f"{method} took longer than {timeout_s:g} s; the {self.kind} was "
                                       "replaced") from None
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
                failures += 1
                self._out_of_rotation(i, e)
                if failures >= len(self.actors):
                    raise NoActorsError(f"{method} failed on {failures} {self.kind}(s) that died: "
                                        f"{one_line(e)}") from None
            except ray.exceptions.RayTaskError as e:
                # The call raised inside the actor: it may have left the actor broken (an engine
                # that stops answering after a failed adapter load). It takes no more work until
                # its health check answers.
                if self._health is not None and self._alive[i]:
                    self._alive[i] = False
                    log.warning(f"{self.kind} {i} failed a call, checking its health before it takes more work",
                                extra={"error": one_line(e)})
                    self._checks[i] = asyncio.get_running_loop().create_task(self._check_health(i))
                raise
            finally:
                self._inflight[i] -= 1

    async def _check_health(self, i: int) -> None:
        """Back in rotation when the health method answers in time; else killed and replaced."""
        import ray

        method, timeout_s = self._health
        actor = self.actors[i]
        try:
            await asyncio.wait_for(asyncio.wrap_future(getattr(actor, method).remote().future()), timeout_s)
        except (asyncio.TimeoutError, ray.exceptions.RayError) as e:
            if self.actors[i] is actor:
                why = f"no health answer in {timeout_s:g} s" if isinstance(e, asyncio.TimeoutError) else one_line(e)
                self._checks.pop(i, None)
                self.replace(i, why)
            return
        if self.actors[i] is actor and not self._alive[i] and await self._ready(i):
            self._alive[i] = True
            log.warning(f"{self.kind} {i} is healthy, back in rotation", extra={"alive": self.alive})

    def replace(self, i: int, why: str) -> None:
        """Kill actor `i` (hung: it answers nothing) and start a new one in its place, out of
        rotation until it answers."""
        import ray

        old = self.actors[i]
        try:
            ray.kill(old, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone: the new one is started all the same
            pass
        self.actors[i] = self._remote.remote(*self._args)
        self._alive[i] = False
        log.warning(f"{self.kind} {i} hung ({why}): killed, a new one is starting", extra={"alive": self.alive})
        self._ensure_probes()

    async def _ready(self, i: int) -> bool:
        """Run `on_ready` for actor `i`; one that cannot be brought up to date is replaced (False)."""
        if self.on_ready is None:
            return True
        actor = self.actors[i]
        try:
            await self.on_ready(i)
            return True
        except Exception as e:  # noqa: BLE001 - e.g. Ray restarted it from arguments since replaced
            if self.actors[i] is actor:
                self.replace(i, f"could not be brought up to date: {one_line(e)}")
            return False

    async def restart(self, i: int, args: tuple, timeout_s: float) -> None:
        """Replace actor `i` by one built from `args` (and build every later one from them): out of
        rotation first, so new calls go to the others (or wait while none is alive), killed once
        the calls it holds are answered, back in rotation once the new one answers `on_ready`."""
        import ray

        self._args = args
        self._restarting.add(i)
        try:
            was_alive, self._alive[i] = self._alive[i], False
            if was_alive:
                log.warning(f"{self.kind} {i} restarting, out of rotation", extra={"alive": self.alive})
            deadline = time.monotonic() + timeout_s
            while self._inflight[i] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            old = self.actors[i]
            try:
                ray.kill(old, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
            self.actors[i] = new = self._remote.remote(*args)
            started = time.monotonic()
            while True:
                try:
                    await asyncio.wait_for(asyncio.wrap_future(new.__ray_ready__.remote().future()),
                                           STARTUP_LOG_INTERVAL_S)
                    break
                except asyncio.TimeoutError:
                    if time.monotonic() - started > timeout_s:
                        raise DialogueLLMError(f"{self.kind} {i} did not start within {timeout_s:g} s") from None
                    log.warning(f"waiting for {self.kind} {i} to start", extra={
                        "waited_s": round(time.monotonic() - started)})
            if self.actors[i] is new and await self._ready(i):
                self._alive[i] = True
                log.warning(f"{self.kind} {i} restarted, back in rotation", extra={
                    "alive": self.alive, "took_s": round(time.monotonic() - started, 1)})
        finally:
            self._restarting.discard(i)
            if not self._alive[i]:
                self._ensure_probes()

    def abandon_waiting(self) -> None:
        """Calls waiting for a live actor now raise `NoActorsError` (a stopping worker lets them go);
        later calls wait as usual."""
        self._abandons += 1

    async def _pick(self, prefer: int | None = None, full_at: int | None = None) -> int:
        if prefer is not None and self._alive[prefer] and (full_at is None or self._inflight[prefer] < full_at):
            return prefer
        abandons, waited = self._abandons, 0
        while not any(self._alive):
            if self._abandons != abandons:
                raise NoActorsError(f"no {self.kind} alive; the call was let go while waiting for one")
            self._ensure_probes()
            if waited % int(STARTUP_LOG_INTERVAL_S / PROBE_INTERVAL_S) == 0:
                log.warning(f"no {self.kind} alive, waiting for one to restart")
            await asyncio.sleep(PROBE_INTERVAL_S)
            waited += 1
        live = [i for i in range(len(self.actors)) if self._alive[i]]
        least = min(self._inflight[i] for i in live)
        tied = [i for i in live if self._inflight[i] == least]
        choice = tied[self._next % len(tied)]
        self._next += 1
        return choice

    def _out_of_rotation(self, i: int, error: BaseException) -> None:
        if self._alive[i]:
            self._alive[i] = False
            log.warning(f"{self.kind} {i} died, out of rotation until it answers again",
                        extra={"error": one_line(error), "alive": self.alive})
        self._ensure_probes()

    def _ensure_probes(self) -> None:
        """A probe, on the running loop, for every actor out of rotation (a worker's loop may have
        ended since: the pool outlives it)."""
        loop = asyncio.get_running_loop()
        for i, alive in enumerate(self._alive):
            probe, check = self._probes.get(i), self._checks.get(i)
            if check is not None and not check.done() and check.get_loop() is loop:
                continue  # its health check puts it back (or replaces it)
            if i in self._restarting:
                continue  # `restart` puts it back
            if not alive and (probe is None or probe.done() or probe.get_loop() is not loop):
                self._probes[i] = loop.create_task(self._probe(i))

    async def _probe(self, i: int) -> None:
        """Ask actor `i` until it answers (Ray restarts it), then put it back in rotation."""
        import ray

        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            try:
                await self.actors[i].__ray_ready__.remote()
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                continue
            if i in self._restarting or not await self._ready(i):
                return
            self._alive[i] = True
            log.warning(f"{self.kind} {i} is back in rotation", extra={"alive": self.alive})
            return

    def first_answers(self, method: str, timeout_s: float = 120) -> list[Any]:
        """`method()` of every actor, waited for. Every 10 s a log line says what is still waited
        for; actors the cluster has not placed after `timeout_s` fail the call with one line
        naming the resources asked and free. Placed actors may take longer (a 7B model loads
        for minutes): they are waited for, and a failed start raises here."""
        import ray

        pending = {getattr(a, method).remote(): i for i, a in enumerate(self.actors)}
        answers: list[Any] = [None] * len(self.actors)
        started = time.monotonic()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=STARTUP_LOG_INTERVAL_S)
            for ref in ready:
                answers[pending.pop(ref)] = ray.get(ref)  # an actor that failed to start raises here
            if not pending:
                break
            unplaced = sum(not _placed(self.actors[i]) for i in pending.values())
            waited = time.monotonic() - started
            if unplaced and waited >= timeout_s:
                self.shutdown()
                raise DialogueLLMError(
                    f"{unplaced} {self.kind}(s) not placed within {timeout_s:.0f} s: each asks {self.asks}; "
                    f"the cluster has {_totals()} in all, {_free()} free") from None
            log.warning(f"waiting for {len(pending)} {self.kind}(s): {unplaced} not placed yet, "
                        f"{len(pending) - unplaced} loading", extra={
                            "asks_each": self.asks, "free": _free(), "waited_s": round(waited)})
        return answers

    def shutdown(self) -> None:
        import ray

        for task in [*self._probes.values(), *self._checks.values()]:
            try:
                task.cancel()
            except RuntimeError:  # its loop (a worker's) has ended: nothing runs it any more
                pass
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self in ActorSet._held:
            ActorSet._held.remove(self)

    @classmethod
    def _held_elsewhere(cls) -> dict[str, float]:
        held: dict[str, float] = {}
        for other in cls._held:
            for key, value in other.asks.items():
                held[key] = held.get(key, 0) + value * len(other.actors)
        return held


def _check_fits(kind: str, count: int, asks: dict[str, float], held: dict[str, float]) -> None:
    """Fail at once when a local Ray can never place the actors (beside this process's others);
    a cluster may grow (autoscaling), so there `first_answers` waits, saying what for."""
    totals = _totals()
    for key, each in asks.items():
        needed = each * count + held.get(key, 0)
        if needed > totals.get(key, 0):
            mine = f" besides the {held[key]:g} this process's other actors hold" if held.get(key) else ""
            raise DialogueLLMError(
                f"{count} {kind}(s) ask for {each:g} {key} each{mine}, but the cluster has {totals.get(key, 0):g} "
                f"{key} in all: lower their number or their {key} share (e.g. --cpus-per-engine)")


def _placed(actor: Any) -> bool:
    """Whether Ray has given the actor a worker process (it is then loading, not waiting)."""
    from ray._private import state

    try:
        return bool((state.actors(actor_id=actor._actor_id.hex()) or {}).get("Pid"))
    except Exception:  # noqa: BLE001 - the GCS could not tell: assume placed rather than fail a start
        return True


def _totals() -> dict[str, float]:
    import ray

    return {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}


def _free() -> dict[str, float]:
    import ray

    return {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
