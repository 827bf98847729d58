"""Structured logs: one JSON object a line (or plain text), with the event's fields at top level."""

from __future__ import annotations

import json
import logging
import time
import warnings

from pipeline.core import envs

# The libraries whose INFO and WARNING lines a command shows only with --verbose.
LIBRARY_LOGGERS = ("ray", "vllm", "transformers", "torch", "filelock", "urllib3", "httpx", "uvicorn.error")

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict:
    """The event's own fields (`extra=`), without the record's standard attributes or private
    ones that libraries add (Ray stamps `_ray_timestamp_ns` on every record)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                "event": record.getMessage()}
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname.lower():<7} {record.getMessage()} {extra}".rstrip()


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    """Log `dialoguellm.*` to stderr as `fmt` ("json" or "text")."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger = logging.getLogger("dialoguellm")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def quiet_libraries(verbose: bool = False) -> None:
    """Our lines only, unless `verbose`: Ray's and vLLM's INFO and WARNING lines, and the libraries'
    Python warnings, are left out (errors still show). Ray and vLLM read the level when they start
    (`workers.actor_set.ensure_ray` passes the `ray` logger's level to `ray.init`), in actors too."""
    global _library_level
    level = _library_level = logging.INFO if verbose else logging.ERROR
    envs.set_default("VLLM_LOGGING_LEVEL", logging.getLevelName(level))
    envs.set_default("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    envs.set_default("TRANSFORMERS_VERBOSITY", "info" if verbose else "error")
    if not verbose:
        envs.set_default("PYTHONWARNINGS", "ignore")
        warnings.filterwarnings("ignore")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)


_library_level = logging.INFO  # the Python API's default: the libraries as they are


def library_log_level() -> int:
    """The level `quiet_libraries` set for the libraries (INFO unless a command asked otherwise).
    Ray resets its logger when imported, so `ensure_ray` reads it here."""
    return _library_level
