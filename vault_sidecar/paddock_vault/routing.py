"""Where a request goes, decided from how its connection arrived; disagreements are refused.

Inside a CONNECT tunnel or a redirected TLS connection the destination is fixed (the CONNECT
authority, which the SNI already matched), and the Host header and any absolute target must name
the same host. A proxy request (`GET http://...`) names its destination in the target, and Host must
agree; a redirected plain HTTP connection takes its name from Host.
"""

from __future__ import annotations

import functools

from paddock_vault import hosts
from paddock_vault.errors import PolicyError, RequestError
from paddock_vault.forward import Router
from paddock_vault.h1 import Head
from paddock_vault.upstream import Destination


@functools.lru_cache(maxsize=4096)
def _authority(value: bytes, default_port: int | None) -> tuple[str, int | None]:
    try:
        text = value.decode("ascii")
        if default_port is None and ":" not in text.rsplit("]", 1)[-1]:
            return hosts.normalize(text), None
        return hosts.split_authority(text, default_port)
    except (UnicodeDecodeError, hosts.HostError) as error:
        raise RequestError(f"invalid authority: {error}") from None


def _host_header(request: Head) -> tuple[str, int | None]:
    values = request.values(b"host")
    if len(values) != 1:
        raise RequestError("a request needs exactly one Host header")
    return _authority(values[0], None)


def _split_absolute(target: bytes, scheme: bytes) -> tuple[bytes, bytes]:
    """(authority, origin-form target) of an absolute-form target with the given scheme."""
    prefix = scheme + b"://"
    if not target.lower().startswith(prefix):
        raise RequestError(f"expected a {scheme.decode()}:// target")
    rest = target[len(prefix) :]
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if not path.startswith(b"/"):
        path = b"/" + path
    return authority, path


def _agree(dest: Destination, host: str, port: int | None, what: str) -> None:
    if host != dest.host or (port is not None and port != dest.port):
        raise PolicyError(
            f"{what} {host}{f':{port}' if port else ''} does not match the connection's "
            f"destination {dest.authority()}",
            status=421,
            reason="mismatch",
        )


def fixed(dest: Destination) -> Router:
    """Requests inside a connection to dest (a CONNECT tunnel, a redirected connection)."""
    scheme = b"https" if dest.tls else b"http"

    def route(request: Head) -> tuple[Destination, bytes]:
        target = request.target
        if request.method == b"CONNECT":
            raise RequestError("CONNECT inside a tunnel")
        if not (target.startswith(b"/") or target == b"*"):
            authority, target = _split_absolute(target, scheme)
            _agree(dest, *_authority(authority, dest.port), "request target")
        _agree(dest, *_host_header(request), "Host")
        return dest, target

    return route


def proxy_request(request: Head) -> tuple[Destination, bytes]:
    """A plain HTTP proxy request: `GET http://host[:port]/path`."""
    if request.method == b"CONNECT":
        raise RequestError("CONNECT must be the first request on a proxy connection")
    if request.target.lower().startswith(b"https://"):
        raise RequestError("use CONNECT for https:// (set HTTPS_PROXY)")
    authority, target = _split_absolute(request.target, b"http")
    host, port = _authority(authority, 80)
    dest = Destination(host, port or 80, tls=False)
    _agree(dest, *_host_header(request), "Host")
    return dest, target


def by_host(port: int) -> Router:
    """A redirected plain HTTP connection to port: the Host header names the destination."""

    def route(request: Head) -> tuple[Destination, bytes]:
        host, host_port = _host_header(request)
        dest = Destination(host, port, tls=False)
        _agree(dest, host, host_port, "Host")
        return fixed(dest)(request)

    return route
