"""Outbound HTTP to user-given URLs, pinned to the address that was checked (no DNS rebinding).

The SSRF guard resolves a host and checks every address. If the HTTP client then resolved the name again,
a hostile DNS server could answer a public address to the check and ``127.0.0.1`` to the connection. So the
request goes to the checked IP itself: the URL's host is replaced by the address, the ``Host`` header keeps
the name, and for HTTPS the TLS layer is told the name for SNI and certificate checks (urllib3's
``server_hostname`` / ``assert_hostname``), so the certificate is still verified against the name.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

import certifi
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

log = logging.getLogger(__name__)

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
# Cloud metadata and credential services: refused even where private addresses are allowed (they hand out
# credentials). Most live on link-local addresses (AWS, GCP and Azure on 169.254.169.254, ECS task credentials
# on 169.254.170.2), so all of link-local is refused; the others are listed (AWS's IPv6 one, Alibaba's, and Azure's
# WireServer, the host's channel beside its metadata service).
METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200"),
                      ipaddress.ip_address("168.63.129.16")}


# IPv6 addresses that carry an IPv4 one a gateway may forward to: NAT64's well-known prefix (RFC 6052, the
# IPv4 address in the last 32 bits) and the deprecated IPv4-compatible form (``::a.b.c.d``); 6to4 (2002::/16)
# carries it in bits 16..48 (``sixtofour``). On a NAT64 or DNS64 network ``64:ff9b::a00:1`` reaches 10.0.0.1.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT's ``::ffff:0:a.b.c.d`` (RFC 2765)
# Prefixes whose IPv4 address cannot be read off the address (a local NAT64 prefix of any length, RFC 8215), and
# IPv6 site-local (fec0::/10: deprecated, still routed inside some networks, and taken for global by Python):
# never taken for public, nor for anything but a possible metadata address where private ones are allowed.
UNREADABLE = (ipaddress.ip_network("64:ff9b:1::/48"),)
SITE_LOCAL = ipaddress.ip_network("fec0::/10")
# Never a receiver, private addresses allowed or not: IPv4's class E and its broadcast address (Python counts them
# private, the loopback-and-LAN setting was never meant to open them)
IPV4_RESERVED = ipaddress.ip_network("240.0.0.0/4")


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 one reaches through a translation (IPv4-mapped, NAT64, IPv4-compatible, 6to4),
    so it is checked as that; any other address as it is."""
    if address.version == 4:
        return address
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address in NAT64 or address in IPV4_TRANSLATED or (address in IPV4_COMPATIBLE and int(address) > 1):
        # (:: and ::1 are themselves)
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour or address


def is_metadata_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address that may serve cloud metadata or credentials (see ``METADATA_ADDRESSES``)."""
    if any(address in net for net in UNREADABLE):  # whatever IPv4 address it reaches may be the metadata one
        return True
    address = _plain(address)
    return address.is_link_local or address in METADATA_ADDRESSES


# The longest a host name may take to resolve (a webhook attempt's whole deadline, if shorter): past glibc's own
# retries (5 s per name server and try), so one lost packet or a dead first server still resolves
RESOLVE_SECONDS = 15.0
MAX_ADDRESSES = 4  # the most addresses of one name a request tries, in the resolver's order
# Lookups running in a process at once, those left behind by a caller that stopped waiting included: each is a
# thread the resolver holds until it gives up (a minute and more), so a name server that never answers, named in
# submit after submit, grew them without bound. Past it a lookup is not started (read as one that timed out).
MAX_LOOKUP_THREADS = 32
_LOOKUP_THREADS = threading.BoundedSemaphore(MAX_LOOKUP_THREADS)


class RefusedDestination(ValueError):
    """The URL may not be contacted (the message says why, in words for the user)."""


class NotResolved(RefusedDestination):
    """The host name did not resolve now: a DNS outage passes, so a webhook tries again (a policy refusal is final)."""


class ResolveTimedOut(NotResolved):
    """No answer within the time given: the name may yet resolve (or its name server stalls on purpose)."""


@dataclass(frozen=True)
class PinnedTarget:
    urls: tuple[str, ...]  # the URL with its host replaced by each checked address, in the resolver's order
    host_header: str
    hostname: str  # the name TLS is told (SNI, the certificate's check): no trailing dot, as urllib3 and curl do


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _never_contacted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses no receiver has, private ones allowed or not: multicast, unspecified, IPv4's reserved block."""
    reached = _plain(address)
    return reached.is_multicast or reached.is_unspecified or (reached.version == 4 and reached in IPV4_RESERVED)


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    reached = _plain(address)
    return (reached.is_global and not any(address in net for net in UNREADABLE)
            and not (address.version == 6 and address in SITE_LOCAL))


def pin(url: str, allow_private: bool, resolve_seconds: float = RESOLVE_SECONDS) -> PinnedTarget:
    """Resolve ``url``'s host once (within ``resolve_seconds``), check every address (unless ``allow_private``,
    only that none is a metadata or never-contacted one), and pin them all, in the resolver's order.

    A refusal names no address, and where private addresses are refused a name that resolves to one raises what a
    name that does not resolve raises (``NotResolved``, same words): told apart, in the words or in what the caller
    does next (a webhook retried or given up, a fetch's error code), any tenant could map which internal names exist
    (``postgres``, ``minio``); the log keeps which it was."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedDestination("only http and https URLs with a host are allowed")
    if parts.username is not None or parts.password is not None:
        # nothing would send them (the request goes to the pinned address), and every log line would show them
        raise RefusedDestination("a URL may not carry a user name or password; put a token in its path or query")
    if parts.port == 0:
        raise RefusedDestination("port 0 is no port a server listens on")
    host = parts.hostname
    if host.lower().rstrip(".") in METADATA_HOSTS:
        raise RefusedDestination(f"{host} is a cloud metadata host")
    port = parts.port or _default_port(parts.scheme)
    not_public = f"{host} does not resolve to a public address"
    try:
        infos = _resolve(host, port, resolve_seconds)
    except NotResolved as exc:
        log.info("%s: %s", host, exc)
        raise type(exc)(not_public if not allow_private else str(exc)) from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
    for address in addresses:
        metadata = is_metadata_address(address)
        if metadata or _never_contacted(address) or not (allow_private or _public(address)):
            # which address stays in the log: told to the caller, any tenant could map internal names
            log.info("refused %s: it resolves to the non-public address %s", host, address)
            if not allow_private and not _literal(host):
                # the same kind as a name that does not resolve, not only the same words: a final refusal here
                # and a retry there told a tenant, in its delivery log or its job's error code, which names exist
                raise NotResolved(not_public)
            raise RefusedDestination(f"{host} is, or may reach, a cloud metadata or link-local address" if metadata
                                     else not_public)
    if not addresses:
        raise NotResolved(not_public if not allow_private else f"{host} does not resolve")
    addresses = addresses[:MAX_ADDRESSES]  # every one checked; the first few tried (a name with dozens that do not
    # answer held a worker for dozens of connect timeouts)
    named = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets (RFC 9110: Host)
    host_header = named if parts.port in (None, _default_port(parts.scheme)) else f"{named}:{parts.port}"
    urls = tuple(urlunsplit((parts.scheme, f"[{a}]:{port}" if a.version == 6 else f"{a}:{port}", parts.path or "/",
                             parts.query, "")) for a in addresses)
    # a fully qualified name's dot ("hooks.example.com.") is for DNS: no certificate names it, so an https receiver
    # or image host written so failed every attempt on a certificate that requests and curl accept
    return PinnedTarget(urls, host_header, host.rstrip("."))


def _literal(host: str) -> bool:
    """Whether ``host`` is an IP address written out (its refusal tells the tenant nothing it did not write)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int, seconds: float) -> list[tuple]:
    """``getaddrinfo`` within ``seconds``. Why a thread: the lookup blocks for as long as the system's resolver
    tries (its own timeouts, times its attempts, times its servers) and cannot be interrupted, so a host whose name
    server does not answer held a webhook attempt past its deadline and an API submit naming it for as long. A
    lookup left behind ends on its own, in the background, when the resolver gives up."""
    if _literal(host):  # an address literal needs no lookup (and is checked even when no time is given for one)
        literal = ipaddress.ip_address(host.split("%", 1)[0])
        return [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                 "", (str(literal), port))]
    if seconds <= 0:  # no time for a lookup: none started (one left behind would run on in the background)
        raise ResolveTimedOut(f"{host} was not looked up")
    gate = _LOOKUP_THREADS
    if not gate.acquire(blocking=False):  # stalled lookups of a hostile name server fill them
        raise ResolveTimedOut(f"{host} was not looked up: {MAX_LOOKUP_THREADS} lookups are still running")
    found: dict[str, object] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            found["infos"] = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            found["error"] = exc
        finally:
            gate.release()
            done.set()

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    if not done.wait(max(seconds, 0.0)):
        raise ResolveTimedOut(f"{host} did not resolve within {seconds:.3g} s")
    if "error" in found:
        raise NotResolved(f"{host} does not resolve") from None
    return found["infos"]  # type: ignore[return-value]


class _NamedTLSAdapter(HTTPAdapter):
    """Connects to an IP but does SNI and certificate checks for the original host name."""

    def __init__(self, hostname: str, **kwargs):
        self.hostname = hostname
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self.hostname
        kwargs["assert_hostname"] = self.hostname
        super().init_poolmanager(*args, **kwargs)


def pinned_request(method: str, url: str, allow_private: bool, resolve_seconds: float = RESOLVE_SECONDS,
                   deadline: float | None = None, **kwargs) -> requests.Response:
    """``requests.request`` to the pinned addresses of ``url``, each in turn until one connects (a name's dead
    AAAA record, or a round-robin address that is down, ended every fetch at the first); redirects are never
    followed here. With a ``deadline`` (``time.monotonic()``), each address's connect timeout is at most an equal
    share of the time left, as ``post_within``'s are (each took the whole connect timeout: a name with many
    addresses that do not answer held the fetch many times past its deadline)."""
    target = pin(url, allow_private, resolve_seconds)
    headers = {**kwargs.pop("headers", {}), "Host": target.host_header}
    for index, pinned in enumerate(target.urls):
        options = dict(kwargs)
        if deadline is not None:
            share = _share(deadline, len(target.urls) - index)
            connect, read = options.get("timeout") or (share, share)
            options["timeout"] = (min(connect, share), read)
        try:
            return _request(target, method, pinned, headers, options)
        except requests.exceptions.ConnectionError as exc:
            if index == len(target.urls) - 1 or not _unconnected(exc):
                raise
    raise AssertionError("pin() gives at least one address")


def _request(target: PinnedTarget, method: str, pinned: str, headers: dict, kwargs: dict) -> requests.Response:
    """One request on a fresh session that reads nothing from the environment but the trusted certificates:
    no ``HTTP(S)_PROXY`` (a fetch went through the operator's proxy while ``post_within``'s webhooks connected
    directly, so on a network whose only way out is a proxy fetches worked and webhooks never did) and no
    ``~/.netrc`` credentials sent to a customer's host."""
    with requests.Session() as session:
        session.trust_env = False
        session.mount("https://", _NamedTLSAdapter(target.hostname))
        return session.request(method, pinned, headers=headers, allow_redirects=False,
                               **{"verify": _trusted_certificates(), **kwargs})


def _unconnected(exc: requests.exceptions.ConnectionError) -> bool:
    """Whether the request failed before anything was sent (refused, unreachable, or no answer to connect)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.exceptions.ConnectTimeout) or isinstance(reason, NewConnectionError)


class DeadlinePassed(OSError):
    """The whole exchange took longer than its deadline (connect, send, the answer's head and body together)."""


def post_within(url: str, body: bytes, headers: dict[str, str], allow_private: bool, seconds: float) -> int:
    """POST ``body`` to a pinned address of ``url`` (the first that connects); the status code. The whole
    exchange ends within ``seconds``: a timer shuts the socket down at the deadline, which ends any read or write
    blocked in between (a socket timeout bounds each wait, not their sum: a receiver answering a byte a second
    held a webhook worker for as long as it liked, and its whole body was read into memory). The answer's body is
    not read: its status is all that matters. Raises ``RefusedDestination`` before connecting, ``DeadlinePassed``,
    or ``OSError`` / ``http.client.HTTPException`` for a connection that failed."""
    deadline = time.monotonic() + seconds
    target = pin(url, allow_private, min(seconds, RESOLVE_SECONDS))
    parts, sock = _connect(target, deadline)
    killer = sock.dup()  # the same connection under a descriptor TLS does not take over (wrap_socket detaches sock)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        with contextlib.suppress(OSError):  # already closed: nothing to end
            killer.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), expire)
    timer.start()
    try:
        stream = _tls_context().wrap_socket(sock, server_hostname=target.hostname) if parts.scheme == "https" \
            else sock
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=seconds)
        connection.sock = stream  # connected and checked above: http.client only speaks HTTP on it
        try:
            connection.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                               headers={**headers, "Host": target.host_header, "Connection": "close"})
            status = connection.getresponse().status
            if expired.is_set():  # the shutdown's end of stream reads as the end of a head cut short: said below
                raise OSError("cut at the deadline")
            return status
        finally:
            connection.close()
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise DeadlinePassed(f"no whole answer within {seconds:g} s") from None
        raise
    finally:
        timer.cancel()
        sock.close()
        killer.close()


def _connect(target: PinnedTarget, deadline: float) -> tuple[SplitResult, socket.socket]:
    """A connection to the first of ``target``'s addresses that takes one before ``deadline`` (``_share``), its
    timeout then the time left: a share bounds the connect only (kept for the exchange, a name with an A and an AAAA
    record cut a receiver answering in 6 s of a 10 s timeout at 5 s, and one with four at 2.5 s)."""
    for index, pinned in enumerate(target.urls):
        parts = urlsplit(pinned)
        try:
            sock = socket.create_connection((parts.hostname, parts.port),
                                            timeout=_share(deadline, len(target.urls) - index))
        except OSError:
            if index == len(target.urls) - 1:
                raise
            continue
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        return parts, sock
    raise AssertionError("pin() gives at least one address")


def _share(deadline: float, addresses_left: int) -> float:
    """An address's connect timeout: an equal share of the time left before ``deadline`` among those left to try
    (a dead first address took the whole of it), the last one all of it."""
    return max(deadline - time.monotonic(), 0.001) / addresses_left


def _trusted_certificates() -> str:
    """The certificates an https receiver or image host is checked against, for the webhooks and the image fetch
    alike: an operator's private CA set in REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE), a file or, as requests also
    takes, a hashed folder; else certifi's."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()


def _tls_context() -> ssl.SSLContext:
    """``_trusted_certificates`` as an SSL context, for ``post_within``'s own TLS."""
    trusted = _trusted_certificates()
    if os.path.isdir(trusted):
        return ssl.create_default_context(capath=trusted)
    return ssl.create_default_context(cafile=trusted)
