"""Every environment variable the project reads or sets, in one module (as `vllm.envs` does).

`READ` lists what a user may set for us; `SET` lists what we set for the libraries we start
(vLLM, Ray, OpenMP), always before they start and never over a value the user gave. Nothing else
in the project touches `os.environ`; the README's "Environment variables" table lists both.
"""

from __future__ import annotations

import os
from pathlib import Path

READ: dict[str, str] = {
    "DIALOGUELLM_HOME": "cache folder for converted models, merged models and descriptions "
                        "(default: ~/.cache/dialoguellm)",
    "DIALOGUELLM_DATA": "data root used when --data is not given (default: ../shared/data beside the checkout)",
    "DIALOGUELLM_WATCH_TOKEN": "the watch page's access token when --token is not given",
    "RAY_ADDRESS": "join this Ray cluster instead of starting a local one (read by Ray too)",
}

SET: dict[str, str] = {
    "VLLM_LOGGING_LEVEL": "vLLM's log level: ERROR, or INFO with --verbose",
    "VLLM_LOGGING_STREAM": "ext://sys.stderr: vLLM's log lines go to stderr (vLLM's own default is stdout), so a "
                           "command's stdout holds only its results (tables, JSON lines)",
    "TRANSFORMERS_VERBOSITY": "transformers' log level: error, or info with --verbose",
    "PYTHONWARNINGS": "ignore (without --verbose): libraries' deprecation warnings stay out of our output, "
                      "in Ray's worker processes too",
    "RAY_worker_niceness": "0 for a local Ray: its default of 15 stalls CPU engines whenever Ray's own processes run",
    "VLLM_CPU_OMP_THREADS_BIND": "the cores a CPU engine computes on (EngineConfig.cpu_threads)",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0: vLLM would otherwise keep one core idle for its scheduler",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0 on a CPU: one engine process instead of three, starts in half the time",
    "OMP_NUM_THREADS": "every core for a CPU engine actor (Ray starts actors with 1)",
}


def read(name: str) -> str | None:
    """The value of one of the `READ` variables, None when unset or empty."""
    if name not in READ:
        raise KeyError(f"{name} is not an environment variable of this project (see pipeline.core.envs.READ)")
    return os.environ.get(name) or None


def is_set(name: str) -> bool:
    """Whether one of the `SET` variables already has a value (the user's, or ours)."""
    _check_set(name)
    return name in os.environ


def libraries_verbose() -> bool:
    """Whether the libraries we start may print their INFO output, progress bars included: the
    vLLM level the command set (`pipeline.core.logs.quiet_libraries`), inherited by actors."""
    return os.environ.get("VLLM_LOGGING_LEVEL", "INFO").upper() in ("DEBUG", "INFO")


def set_default(name: str, value: str) -> None:
    """Give one of the `SET` variables `value` unless it has one."""
    _check_set(name)
    os.environ.setdefault(name, value)


def force(name: str, value: str) -> None:
    """Set one of the `SET` variables whatever it held (the value comes from our own config)."""
    _check_set(name)
    os.environ[name] = value


def home() -> Path:
    """The project's cache folder."""
    return Path(read("DIALOGUELLM_HOME") or Path.home() / ".cache" / "dialoguellm").expanduser()


def usable_cpus() -> list[int]:
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0))


def _check_set(name: str) -> None:
    if name not in SET:
        raise KeyError(f"{name} is not a variable this project sets (see pipeline.core.envs.SET)")
