"""Name lookups faked for the SSRF tests: one internal name resolves to a private address, every other name does
not resolve, and nothing is asked of the machine's name server."""

from __future__ import annotations

import socket
from collections.abc import Callable


def one_internal_name(name: str, address: str = "10.1.2.3") -> Callable[..., list[tuple]]:
    """A ``socket.getaddrinfo`` under which ``name`` resolves to ``address`` and no other name resolves."""

    def resolve(host, port, *args, **kwargs):
        if host == name:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


def no_connections(*args, **kwargs):
    """Stands in for ``connect``: a refusal must come before any connection."""
    raise AssertionError("a connection was attempted")
