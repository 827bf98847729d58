"""User-facing errors: each carries one readable line; the CLI prints it and exits non-zero."""


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
