"""Leaf certificates for the hosts the vault terminates TLS for: minted from the Agent CA, cached.

Each leaf names one host (SAN), is for serverAuth only, carries SKI/AKI (paddock.pki.issue) and
lives a few hours; a cached leaf is replaced once half its life is gone. The SSL context loads the
leaf from an anonymous memory file, so the key never touches a disk and the container's root
filesystem can stay read-only.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import time
from collections import OrderedDict

from paddock import pki

LEAF_LIFETIME = dt.timedelta(hours=4)
_MAX_CACHED = 512


def server_context(leaf: pki.KeyPair) -> ssl.SSLContext:
    """A TLS server context presenting leaf, for HTTP/1.1 only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    fd = os.memfd_create("paddock-leaf", os.MFD_CLOEXEC)
    try:
        os.write(fd, leaf.cert_pem + leaf.key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return context


class LeafCache:
    """SSL contexts per host name, each with a short-lived leaf signed by the Agent CA."""

    def __init__(self, ca: pki.KeyPair, lifetime: dt.timedelta = LEAF_LIFETIME) -> None:
        self.ca = ca
        self.lifetime = lifetime
        self._contexts: OrderedDict[str, tuple[float, ssl.SSLContext]] = OrderedDict()
        self.minted = 0

    def context_for(self, host: str) -> ssl.SSLContext:
        """The server context for a normalised host name, minting a leaf when needed."""
        now = time.monotonic()
        cached = self._contexts.get(host)
        if cached is not None and cached[0] > now:
            self._contexts.move_to_end(host)
            return cached[1]
        context = server_context(pki.issue(self.ca, [host], lifetime=self.lifetime))
        self.minted += 1
        self._contexts[host] = (now + self.lifetime.total_seconds() / 2, context)
        self._contexts.move_to_end(host)
        while len(self._contexts) > _MAX_CACHED:
            self._contexts.popitem(last=False)
        return context
