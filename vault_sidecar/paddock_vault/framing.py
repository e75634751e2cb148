"""Strict checks on a raw request head before the parser sees it: smuggling tricks are refused.

llhttp frames messages safely for itself, but treats some heads as benign that another server
behind a proxy might read differently (`chunKed`, which it matches case-insensitively, or a
Transfer-Encoding list). The vault sees the raw bytes first and refuses those outright, and
anything with both Content-Length and Transfer-Encoding.
"""

from __future__ import annotations

import re

from paddock_vault.errors import RequestError

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")


def head_end(buffer: bytes) -> int:
    """Index just past the blank line that ends the head in buffer, or -1 while incomplete."""
    end = buffer.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


def _values(fields: list[bytes], wanted: bytes) -> list[bytes]:
    """The values of the fields named wanted; RequestError on a malformed or folded field."""
    values = []
    for line in fields:
        if line[:1] in (b" ", b"\t"):
            raise RequestError("obsolete line folding in the request head")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise RequestError("malformed header field")
        if name.lower() == wanted:
            values.append(value.strip(b" \t"))
    return values


def check_request_head(head: bytes) -> None:
    """Raise RequestError unless head (request line, fields, blank line) is unambiguous."""
    if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        raise RequestError("bare CR or LF in the request head")
    if b"\x00" in head:
        raise RequestError("NUL byte in the request head")
    lines = head[:-4].split(b"\r\n")
    request_line, fields = lines[0], lines[1:]
    if request_line.count(b" ") != 2:
        raise RequestError("malformed request line")
    version = request_line.rsplit(b" ", 1)[1]
    lengths = _values(fields, b"content-length")
    encodings = _values(fields, b"transfer-encoding")
    if lengths and encodings:
        raise RequestError("both Content-Length and Transfer-Encoding (request smuggling)")
    if len(lengths) > 1 or (lengths and not _DIGITS.match(lengths[0])):
        raise RequestError("invalid Content-Length")
    if encodings:
        if encodings != [b"chunked"]:
            raise RequestError("Transfer-Encoding must be exactly one `chunked`", status=501)
        if version != b"HTTP/1.1":
            raise RequestError("Transfer-Encoding needs HTTP/1.1")
