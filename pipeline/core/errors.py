"""User-facing errors: each carries one readable line; the CLI prints it and exits non-zero."""

import re


class DialogueLLMError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class DataError(DialogueLLMError):
    """A data file is missing, malformed, or holds a label outside its label set."""


class PromptTooLongError(DialogueLLMError):
    """The target turn alone does not fit the model's context window."""


class ConfigError(DialogueLLMError):
    """A configuration field is invalid; the message names the field."""


class AdapterError(DialogueLLMError):
    """A LoRA adapter folder is unusable (not PEFT, rank too large, unknown name)."""


class VideoError(DialogueLLMError):
    """A video segment that cannot be turned into frames (unreadable, no video, outside the file)."""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# What Ray adds to an error raised in an actor: who ran it, where, and the traceback.
_RAY_WHERE = re.compile(r"\s*\((?:pid|ip|actor_id|repr)=[^)]*\)|\s*ray::\S+|\b(?:pid|ip|actor_id|node_id)=[\w.:-]+,?")
_ACTOR_HEX = re.compile(r"\b[0-9a-f]{24,}\b")
MAX_REASON_CHARS = 300


def one_line(error: BaseException) -> str:
    """A readable one-line reason for `error`: the original exception of an error Ray wrapped
    (its type and message), without terminal escape codes, Ray's pids, IPs and actor ids, or
    tracebacks. Dead letters and log lines carry this."""
    cause = getattr(error, "cause", None)  # ray.exceptions.RayTaskError keeps the actor's exception
    if isinstance(cause, BaseException) and cause is not error:
        error = cause
    text = _ANSI.sub("", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # A traceback's last line is the exception itself; otherwise the first line is the message.
    line = next((x for x in reversed(lines) if re.match(r"^[A-Za-z_.]+(Error|Exception|Timeout)\b", x)), None)
    line = line or (lines[0] if lines else "")
    line = _ACTOR_HEX.sub("…", _RAY_WHERE.sub("", line)).strip(" :,")
    name = type(error).__name__
    if not line.startswith(name):
        line = f"{name}: {line}" if line else name
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"
