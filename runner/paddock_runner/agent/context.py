"""Fitting a conversation into the model's context window.

The gateway keeps a session's whole history and every turn sends it all; a long session outgrows
the model's context, and the model server refuses the request (HTTP 400). The agent then leaves
out the oldest of it for that request, never the system message or the turn's own question, and
tries again. Pure functions: the loop decides when.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from paddock.protocol import Message

LEFT_OUT = "[left out: the model's context window was full]"
"""What replaces a tool's output that had to go (the message stays: its call needs a reply)."""
MARGIN = 1.1
"""Cut a tenth more than the sizes say: characters per token vary across the history."""


@dataclass(frozen=True)
class Shortened:
    messages: list[Message]
    left_out: int
    """How many messages went or lost their content."""


def size(message: Message) -> int:
    """A message's length in characters, what tokens are estimated from."""
    calls = sum(len(c.function.name) + len(c.function.arguments) for c in message.tool_calls or [])
    return len(message.content or "") + calls + 16  # the chat template's own tokens, roughly


def shorten(
    history: list[Message], *, prompt: int | None, context: int | None, reserve: int
) -> Shortened | None:
    """history with enough of its oldest content left out to fit the context; None when nothing
    more can go.

    prompt and context are the model server's token counts (None when it did not tell: then half
    goes). reserve is the room to leave for the reply. Whole earlier exchanges go first, oldest
    first (a user message and everything after it up to the next one, so no tool reply loses its
    call); then this turn's oldest tool outputs are replaced by LEFT_OUT.
    """
    total = sum(size(m) for m in history)
    if prompt and context and prompt > 0:
        target = context - min(reserve, context // 4)
        need = math.ceil(max(prompt - target, 1) / prompt * total * MARGIN)
    else:
        need = total // 2
    head = history[:1] if history and history[0].role == "system" else []
    rest = history[len(head) :]
    users = [i for i, m in enumerate(rest) if m.role == "user"]
    start = users[-1] if users else 0
    exchanges: list[list[Message]] = []
    for message in rest[:start]:
        if message.role == "user" or not exchanges:
            exchanges.append([message])
        else:
            exchanges[-1].append(message)
    current = list(rest[start:])
    cut = left_out = 0
    while exchanges and cut < need:
        gone = exchanges.pop(0)
        cut += sum(size(m) for m in gone)
        left_out += len(gone)
    for i, message in enumerate(current):
        if cut >= need:
            break
        if message.role == "tool" and message.content != LEFT_OUT:
            cut += len(message.content or "") - len(LEFT_OUT)
            current[i] = message.model_copy(update={"content": LEFT_OUT})
            left_out += 1
    if left_out == 0:
        return None
    return Shortened([*head, *(m for e in exchanges for m in e), *current], left_out)
