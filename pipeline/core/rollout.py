"""What a worker serves while adapters are rolled out, and the one rule that picks a turn's adapter.

Pure: the control stream's messages (`pipeline.core.wire.ControlMessage`) fold into a
`RolloutState`, the same on every worker and in the `adapters` command (which refuses at once what
the workers would refuse). `adapter_for` is the canary choice: a stable hash of the conversation id
against the share, so a conversation stays on one adapter while the share holds, and every worker
of the group picks the same one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pipeline.core.errors import DialogueLLMError
from pipeline.core.wire import ControlMessage


class RolloutRefused(DialogueLLMError):
    """A control message that cannot be applied; its text says why, in one line."""


@dataclass(frozen=True)
class RolloutState:
    """Adapters served (name -> (path, digest of its files)), the default, and the canary with its share.

    `seen` keeps the digest every name was ever loaded with, unloaded or not: a name names one set
    of files for good (a reused name has served stale prefix-cache blocks, vLLM #42125).
    `default` None: the engine's own default (its first `--adapter`, or the bare model).
    """

    adapters: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    default: str | None = None
    canary: str | None = None
    share: float = 0.0
    seen: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def started_with(cls, adapters: Mapping[str, tuple[str, str]], default: str | None) -> RolloutState:
        """The state of a worker started with `adapters` (name -> (path, digest)) and that default."""
        return cls(dict(adapters), default, None, 0.0, {n: d for n, (_, d) in adapters.items()})

    def apply(self, message: ControlMessage, digest: str | None = None) -> RolloutState:
        """The state after `message` (a `load` carries the digest of its folder's files); `RolloutRefused`
        when it cannot apply. Applying a message twice changes nothing (a replayed stream is safe)."""
        name = message.name
        if message.op == "load":
            if digest is None:
                raise ValueError("a load needs the digest of its files")
            if self.seen.get(name, digest) != digest:
                raise RolloutRefused(f"adapter {name!r} was already loaded with other files: give a new "
                                     "version a new name")
            if name in self.adapters:
                return self
            return replace(self, adapters={**self.adapters, name: (message.path or "", digest)},
                           seen={**self.seen, name: digest})
        if name not in self.adapters:
            raise RolloutRefused(f"adapter {name!r} is not loaded (loaded: {', '.join(self.adapters) or 'none'})")
        if message.op == "default":
            if message.share >= 1:
                return replace(self, default=name, canary=None, share=0.0)
            if name == self.default:
                raise RolloutRefused(f"adapter {name!r} is already the default: `adapters default {name}` ends "
                                     "a canary")
            return replace(self, canary=name, share=message.share)
        if name in (self.default, self.canary):
            role = "default" if name == self.default else "canary"
            raise RolloutRefused(f"adapter {name!r} is the {role}: make another adapter the default first")
        return replace(self, adapters={k: v for k, v in self.adapters.items() if k != name})

    def adapter_for(self, conversation_id: str) -> str | None:
        """The adapter a turn of `conversation_id` without an `adapter` field gets."""
        if self.canary is not None and canary_bucket(conversation_id) < self.share:
            return self.canary
        return self.default


def canary_bucket(conversation_id: str) -> float:
    """A stable number in [0, 1) for a conversation (SHA-256, the same in every process and version)."""
    digest = hashlib.sha256(conversation_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
