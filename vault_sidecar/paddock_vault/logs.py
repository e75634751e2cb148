"""Log redaction: no record the vault's process writes holds a real value, whoever logged it.

Messages quote what peers sent (an upstream's error text, a certificate name, an exception), and a
peer that knows a real value may put it there in any letter case or encoding. Redaction happens
where every record is made (the log record factory), so it covers the vault's loggers, asyncio's
and any library's, handlers added later and loggers that do not propagate, after the record's
arguments are merged and before any handler sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

Redact = Callable[[str], str]


def redact_record(record: logging.LogRecord, redact: Redact) -> None:
    """Rewrite a record in place: its message, traceback and stack masked."""
    record.msg = redact(record.getMessage())
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install(redact: Redact) -> Callable[[], None]:
    """Make every new log record redacted; returns what puts the previous factory back."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record, redact)
        return record

    logging.setLogRecordFactory(factory)

    def remove() -> None:
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(previous)

    return remove
