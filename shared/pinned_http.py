"""Outbound HTTP to user-given URLs, pinned to the address that was checked (no DNS rebinding).

The SSRF guard resolves a host and checks every address. If the HTTP client then resolved the name again,
a hostile DNS server could answer a public address to the check and ``127.0.0.1`` to the connection. So the
request goes to the checked IP itself: the URL's host is replaced by the address, the ``Host`` header keeps
the name, and for HTTPS the TLS layer is told the name for SNI and certificate checks (urllib3's
``server_hostname`` / ``assert_hostname``), so the certificate is still verified against the name.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
# Cloud metadata and credential services: refused even where private addresses are allowed (they hand out
# credentials). Most live on link-local addresses (AWS, GCP and Azure on 169.254.169.254, ECS task credentials
# on 169.254.170.2), so all of link-local is refused; the others are listed.
METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv4-mapped IPv6 one (``::ffff:a.b.c.d``) reaches, so it is checked as that."""
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def is_metadata_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address that may serve cloud metadata or credentials (see ``METADATA_ADDRESSES``)."""
    address = _plain(address)
    return address.is_link_local or address in METADATA_ADDRESSES


class RefusedDestination(ValueError):
    """The URL may not be contacted (the message says why, in words for the user)."""


@dataclass(frozen=True)
class PinnedTarget:
    url: str  # the URL with its host replaced by the checked address
    host_header: str
    hostname: str


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def pin(url: str, allow_private: bool) -> PinnedTarget:
    """Resolve ``url``'s host once, check every address (unless ``allow_private``), pin the first one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedDestination("only http and https URLs with a host are allowed")
    host = parts.hostname
    if host.lower() in METADATA_HOSTS:
        raise RefusedDestination(f"{host} is a cloud metadata host")
    port = parts.port or _default_port(parts.scheme)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise RefusedDestination(f"{host} does not resolve") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if any(is_metadata_address(address) for address in addresses):
        raise RefusedDestination(f"{host} is a cloud metadata or link-local address")
    if not allow_private:
        for address in addresses:
            reached = _plain(address)
            if not reached.is_global or reached.is_multicast:
                raise RefusedDestination(f"{host} resolves to a non-public address ({address})")
    if not addresses:
        raise RefusedDestination(f"{host} does not resolve")
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{port}"
    host_header = host if parts.port in (None, _default_port(parts.scheme)) else f"{host}:{parts.port}"
    return PinnedTarget(urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header, host)


class _NamedTLSAdapter(HTTPAdapter):
    """Connects to an IP but does SNI and certificate checks for the original host name."""

    def __init__(self, hostname: str, **kwargs):
        self.hostname = hostname
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self.hostname
        kwargs["assert_hostname"] = self.hostname
        super().init_poolmanager(*args, **kwargs)


def pinned_request(method: str, url: str, allow_private: bool, **kwargs) -> requests.Response:
    """``requests.request`` to the pinned address of ``url``; redirects are never followed here."""
    target = pin(url, allow_private)
    headers = {**kwargs.pop("headers", {}), "Host": target.host_header}
    with requests.Session() as session:
        session.mount("https://", _NamedTLSAdapter(target.hostname))
        return session.request(method, target.url, headers=headers, allow_redirects=False, **kwargs)
