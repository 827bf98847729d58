"""Which cores vLLM's CPU build computes on (read by the engine and its child processes)."""

from __future__ import annotations

from pipeline.core import envs


def bind_cpu_threads(cpu_threads: str) -> None:
    """Bind every core this process may use ("all"), or a list such as "0-3"; vLLM alone would
    keep one core idle for its scheduler."""
    if envs.is_set("VLLM_CPU_OMP_THREADS_BIND"):
        return
    if cpu_threads == "all":
        cpu_threads = ",".join(str(c) for c in envs.usable_cpus())
    envs.force("VLLM_CPU_OMP_THREADS_BIND", cpu_threads)
    envs.set_default("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def torch_threads_for_cpu_actor() -> None:
    """Ray starts every actor with OMP_NUM_THREADS=1 (its share of one CPU), which leaves torch's
    own ops on one core; an engine actor without a GPU computes on all cores of its node. Call
    before torch is imported in the actor."""
    import sys

    import ray

    if "torch" in sys.modules or ray.get_gpu_ids():
        return
    envs.force("OMP_NUM_THREADS", str(len(envs.usable_cpus())))
