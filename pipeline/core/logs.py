"""Structured logs: one JSON object a line (or plain text), with the event's fields at top level."""

from __future__ import annotations

import json
import logging
import time

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
