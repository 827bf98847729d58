"""The conversation prompt: the instruction, then every turn up to the target, each a line followed by
the same short slot; the label is scored at the target's slot.

```
### Instruction:
You are an expert in emotion analysis. Read the conversation turn by turn. After each turn comes
"Emotion:", where the emotion its speaker expresses is one label from: neutral, joy, ....

### Conversation:
Customer: My package never arrived and nobody answers!
Emotion:
Agent: I understand. Let me check your order.
(video: One person faces the camera, calm.)
Emotion:
```

Token ids are the concatenation of the parts' own encodings (the instruction, then each turn's line
and the slot), never a re-tokenised joined string: the prompt of turn k + 1 is exactly the prompt of
turn k plus turn k + 1's line and slot, as long as the window (`pipeline.core.context.window_start`)
has not moved. An engine's prefix cache then computes only the new turn, and training reads every
turn's label from one forward pass over the conversation.

Past turns carry no label after their slot (the stream does not know them): the slot is the place
whose next-token distribution over the label tokens is the turn's label distribution.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.labels import LabelSet
from pipeline.core.prompts import _clean
from pipeline.core.turns import Turn

PROMPTS = ("dialoguellm", "conversation")
"""`dialoguellm`: the paper's prompt (previous z turns, target, response mark); `conversation`: this one."""

SLOT = "\nEmotion:"


def conversation_instruction(labels: LabelSet) -> str:
    """The instruction part, identical for every turn of a label set (ends before the first line)."""
    return (
        "### Instruction:\n"
        "You are an expert in emotion analysis. Read the conversation turn by turn. After each turn comes "
        "\"Emotion:\", where the emotion its speaker expresses is one label from: "
        f"{', '.join(labels.labels)}.\n\n"
        "### Conversation:"
    )


def conversation_line(turn: Turn) -> str:
    """One turn's line (it starts with the line break that ends the part before it)."""
    line = f"\n{_clean(turn.speaker)}: {_clean(turn.text)}"
    if turn.description and turn.description.strip():
        line += f"\n(video: {_clean(turn.description)})"
    return line


def conversation_text(labels: LabelSet, target: Turn, window: Sequence[Turn]) -> str:
    """The prompt as text (what the token ids spell, part by part): for logs, tests and people."""
    return conversation_instruction(labels) + "".join(conversation_line(t) + SLOT for t in (*window, target))
