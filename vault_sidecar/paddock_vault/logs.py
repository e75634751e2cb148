"""Log redaction: no record the vault's process writes holds a real value, whoever logged it.

Messages quote what peers sent (an upstream's error text, a certificate name, an exception), and a
peer that knows a real value may put it there in any letter case or encoding. The filter sits on
the process's log handlers, so it sees every record (the vault's, asyncio's, a library's) after its
arguments are merged and before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

Redact = Callable[[str], str]


class RedactLogs(logging.Filter):
    """Masks every real value, form or start of one, in each record's message and traceback."""

    def __init__(self, redact: Redact) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops one."""
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install(redact: Redact) -> Callable[[], None]:
    """Put the filter on every handler of the root logger; returns what takes it off again."""
    handlers = list(logging.getLogger().handlers)
    guard = RedactLogs(redact)
    for handler in handlers:
        handler.addFilter(guard)

    def remove() -> None:
        for handler in handlers:
            handler.removeFilter(guard)

    return remove
