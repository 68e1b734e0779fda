"""Signing (checked with the public standardwebhooks library) and the SSRF guard."""

import contextlib
import json

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.settings import Settings
from shared.webhooks import refused_destination, signed_headers, signing_secret
from tests.dns import one_internal_name


def test_signature_verifies_with_the_standardwebhooks_library():
    secret = signing_secret(Settings(secret_key="k" * 32), "acme")
    assert secret.startswith("whsec_")
    body = json.dumps({"type": "job.succeeded", "data": {"id": "x"}})
    headers = signed_headers(secret, "msg_1", body)
    assert Webhook(secret).verify(body, headers) == {"type": "job.succeeded", "data": {"id": "x"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("succeeded", "failed"), headers)


def test_configured_secret_wins_and_derived_secret_is_stable():
    """Every tenant's secret, the open API's too, is derived from the deployment's, which is never handed out: the
    open API's tenant once got the deployment secret itself, from which anyone computed every later customer's."""
    import base64
    import hashlib
    import hmac

    configured = Settings(webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    deployment = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert signing_secret(configured, "public") != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert signing_secret(configured, "public") == "whsec_" + base64.b64encode(
        hmac.new(deployment, b"upscaler-webhooks/tenant/public", hashlib.sha256).digest()).decode()
    assert signing_secret(Settings(secret_key="a" * 32), "public") == signing_secret(Settings(secret_key="a" * 32),
                                                                                      "public")
    assert signing_secret(Settings(secret_key="a" * 32), "public") != signing_secret(Settings(secret_key="b" * 32),
                                                                                      "public")


def test_each_tenant_has_its_own_secret_from_the_deployments():
    """Every tenant's is derived from the deployment secret, so a change of it changes them all, and no tenant's
    secret gives another's."""
    configured, other = Settings(webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Settings(secret_key="a" * 32)
    secrets = {signing_secret(settings, tenant) for settings in (configured, other)
               for tenant in ("public", "acme", "globex", "env-0123456789ab")}
    assert len(secrets) == 8 and all(s.startswith("whsec_") for s in secrets)
    assert signing_secret(configured, "acme") == signing_secret(configured, "acme")


@pytest.mark.parametrize("url", ["http://127.0.0.1/hook", "http://localhost:8080/x", "http://10.0.0.5/",
                                 "http://192.168.1.10/", "http://172.16.0.1/", "http://169.254.169.254/latest/",
                                 "http://[::1]/", "http://224.0.0.1/", "http://0.0.0.0/",
                                 "http://metadata.google.internal/", "ftp://93.184.216.34/", "file:///etc/passwd"])
def test_private_and_odd_destinations_are_refused(url):
    assert refused_destination(url, allow_private=False) is not None


@pytest.mark.parametrize("url", ["http://[64:ff9b::a00:1]/", "http://[64:ff9b::7f00:1]/", "http://[::127.0.0.1]/",
                                 "http://[::a00:1]/", "http://[2002:a00:1::]/", "http://[2002:7f00:1::1]/",
                                 "http://[64:ff9b:1::5db8:d822]/"])
def test_ipv6_spellings_of_private_ipv4_addresses_are_refused(url):
    """NAT64 (64:ff9b::/96), IPv4-compatible and 6to4 addresses carry an IPv4 address a gateway forwards to:
    64:ff9b::a00:1 is 10.0.0.1 on a NAT64 network, and they passed as public. A local NAT64 prefix, whose IPv4
    part cannot be read off, is never public (and may be the metadata one). Literal addresses only: nothing is
    resolved or contacted."""
    reason = refused_destination(url, allow_private=False)
    assert "does not resolve to a public address" in reason or "may reach, a cloud metadata" in reason


def test_translated_spellings_of_public_and_metadata_addresses_are_read_as_those():
    assert refused_destination("http://[64:ff9b::5db8:d822]/", allow_private=False) is None  # 93.184.216.34
    assert refused_destination("http://[2002:5db8:d822::1]/", allow_private=False) is None
    assert "metadata" in refused_destination("http://[64:ff9b::a9fe:a9fe]/", allow_private=True)


def test_public_addresses_pass_and_private_ones_pass_when_allowed():
    assert refused_destination("https://93.184.216.34/hook", allow_private=False) is None
    assert refused_destination("http://127.0.0.1:9000/hook", allow_private=True) is None
    assert refused_destination("http://metadata.google.internal/", allow_private=True) is not None


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://169.254.170.2/v2/credentials",
                                 "http://[::ffff:169.254.169.254]/latest/", "http://[::ffff:a9fe:a9fe]/",
                                 "http://[fe80::1]/", "http://[fd00:ec2::254]/", "http://100.100.100.200/"])
def test_metadata_and_link_local_addresses_stay_refused_when_private_ones_are_allowed(url):
    """Literal addresses only (nothing is resolved or contacted); an IPv4-mapped IPv6 spelling of a metadata
    address once passed, as did ECS's credentials address."""
    reason = refused_destination(url, allow_private=True)
    assert reason is not None and "metadata" in reason


def test_a_delivery_connects_to_the_address_it_checked_with_one_lookup(monkeypatch):
    """Issue 10 #5 (DNS rebinding): a hostile resolver answers a public address to the check and 127.0.0.1
    afterwards. The connection must go to the checked address, after a single lookup. No packet leaves: the
    connect call is intercepted and refused."""
    import socket

    import requests

    from shared.pinned_http import pinned_request

    lookups, connects = [], []

    def rebinding_resolver(host, port, *args, **kwargs):
        if host == "hooks.rebind.test":  # a name: the hostile DNS answers differently the second time
            lookups.append(host)
            address = "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"
        else:  # an address literal resolves to itself
            address = host
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    def no_connect(sock, address):
        connects.append(address[0])
        raise ConnectionRefusedError("intercepted by the test")

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    with pytest.raises(requests.ConnectionError):
        pinned_request("POST", "http://hooks.rebind.test/hook", allow_private=False, data=b"{}", timeout=2)
    assert lookups == ["hooks.rebind.test"] and set(connects) == {"93.184.216.34"}


def test_a_refused_address_is_refused_before_any_connection(monkeypatch):
    import socket

    from shared.pinned_http import RefusedDestination, pinned_request

    def no_connections(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_connections)
    monkeypatch.setattr(socket.socket, "connect", no_connections)
    for url in ("http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest",
                "http://[::1]:9/", "http://metadata.google.internal/"):
        with pytest.raises(RefusedDestination):
            pinned_request("POST", url, allow_private=False, timeout=1)


def test_an_ipv6_literal_keeps_its_brackets_in_the_host_header_and_a_refusal_names_no_address(monkeypatch):
    """``Host: ::1:18796`` is no valid header (a strict receiver answered 400 to every attempt); a refusal said what
    an internal name resolves to, so any tenant could map the deployment's names."""
    import socket

    from shared.pinned_http import RefusedDestination, pin

    assert pin("http://[::1]:8080/x", allow_private=True).host_header == "[::1]:8080"
    assert pin("http://[::1]/x", allow_private=True).host_header == "[::1]"

    def internal(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("10.1.2.3", port))]

    monkeypatch.setattr(socket, "getaddrinfo", internal)
    with pytest.raises(RefusedDestination) as refused:
        pin("http://postgres:5432/", allow_private=False)
    assert str(refused.value) == "postgres does not resolve to a public address"


def _self_signed(folder, dns_name: str | None = None):
    """A certificate for 127.0.0.1 (or for ``dns_name``) and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name or "127.0.0.1")])
    alternative = x509.DNSName(dns_name) if dns_name else x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([alternative]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def test_an_https_receiver_trickling_its_answer_is_cut_off_at_the_deadline(tmp_path, monkeypatch):
    """TLS took the connection's descriptor over (wrap_socket detaches the socket), so the deadline's shutdown hit
    a dead descriptor and an https receiver sending a byte at a time held the attempt for ever (22 s for 2 here).
    The receiver's certificate is trusted the way the image fetch trusts one: REQUESTS_CA_BUNDLE."""
    import contextlib
    import socket
    import ssl
    import threading
    import time

    from shared.pinned_http import DeadlinePassed, post_within
    from tests.receiver import trickle_head

    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle():
        with contextlib.suppress(OSError):
            trickle_head(context.wrap_socket(listener.accept()[0], server_side=True), 0.25, 120)

    threading.Thread(target=trickle, daemon=True).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    started = time.monotonic()
    try:
        with pytest.raises(DeadlinePassed):
            post_within(f"https://127.0.0.1:{listener.getsockname()[1]}/hook", b"{}", {}, True, 2)
    finally:
        listener.close()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("url", ["http://[fec0::1]/", "http://[::ffff:0:a00:1]/", "http://[::ffff:0:7f00:1]/"])
def test_site_local_and_siit_spellings_are_not_public(url):
    """fec0::/10 (deprecated site-local, still routed in some networks) counted as global; SIIT's
    ``::ffff:0:a.b.c.d`` was not read as the IPv4 address it carries. Literal addresses: nothing is contacted."""
    assert refused_destination(url, allow_private=False) == f"{url[8:-2]} does not resolve to a public address"


@pytest.mark.parametrize("url", ["http://[::ffff:0:a9fe:a9fe]/", "http://168.63.129.16/",
                                 "http://[64:ff9b:1::a9fe:a9fe]/", "http://metadata.google.internal./"])
def test_more_spellings_of_metadata_services_stay_refused_when_private_ones_are_allowed(url):
    assert "metadata" in refused_destination(url, allow_private=True)


@pytest.mark.parametrize("url", ["http://255.255.255.255/", "http://240.0.0.1/", "http://0.0.0.0/",
                                 "http://224.0.0.1/", "http://[ff02::1]/", "http://[::]/"])
def test_allowing_private_receivers_opens_loopback_and_lans_not_broadcast_multicast_or_reserved(url):
    assert refused_destination(url, allow_private=True) is not None
    assert refused_destination("http://127.0.0.1:9/", allow_private=True) is None
    assert refused_destination("http://[::1]:9/", allow_private=True) is None


@pytest.mark.parametrize(("url", "says"), [("http://user:secret@127.0.0.1:9/hook", "user name or password"),
                                           ("http://token@127.0.0.1:9/hook", "user name or password"),
                                           ("http://127.0.0.1:0/hook", "port 0")])
def test_credentials_in_a_url_and_port_0_are_refused(url, says):
    """A password in the URL was accepted, never sent (the request goes to the pinned address) and logged on
    every attempt; port 0 was delivered to port 80 with ``Host: ...:0``."""
    assert says in refused_destination(url, allow_private=True)


def test_a_name_that_does_not_resolve_reads_as_a_private_one(monkeypatch):
    """"does not resolve" against "resolves to a non-public address" told a tenant which internal names exist."""
    import socket

    resolver = one_internal_name("postgres")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    assert refused_destination("http://postgres/", False) == "postgres does not resolve to a public address"
    assert refused_destination("http://nosuchhost/", False) == "nosuchhost does not resolve to a public address"


def test_a_submit_waits_on_a_stalling_name_server_for_seconds_not_for_the_whole_lookup_budget(monkeypatch):
    """A customer's name server that never answers held an API thread 15 s per URL (30 s a submit); the worker
    checks again before it connects, so the submit lets an unanswered lookup through."""
    import socket
    import time

    from shared.webhooks import SUBMIT_RESOLVE_SECONDS

    def stalls(*args, **kwargs):
        time.sleep(SUBMIT_RESOLVE_SECONDS + 2)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", stalls)
    started = time.monotonic()
    assert refused_destination("http://slow.example.test/hook", False) is None
    assert time.monotonic() - started < SUBMIT_RESOLVE_SECONDS + 1


def _dual_stack_name(monkeypatch, port):
    """``hooks.dual.test`` resolves to ::1 first (where nothing listens on ``port``), then 127.0.0.1."""
    import socket

    real = socket.getaddrinfo

    def resolver(host, port_, *args, **kwargs):
        if host == "hooks.dual.test":
            return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", port_, 0, 0)),
                    (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port_))]
        return real(host, port_, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)


def test_a_delivery_and_a_fetch_try_each_address_until_one_connects(monkeypatch):
    """Only the first address was tried: a dead AAAA record failed every attempt where curl went on to the A."""
    import http.server
    import socket
    import threading

    from shared.pinned_http import pinned_request, post_within

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    port = server.server_address[1]
    with contextlib.closing(socket.socket(socket.AF_INET6)) as probe:  # the port must be free on ::1
        if probe.connect_ex(("::1", port)) == 0:
            pytest.skip("the port is taken on ::1 too")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _dual_stack_name(monkeypatch, port)
    try:
        assert post_within(f"http://hooks.dual.test:{port}/hook", b"{}", {}, True, 5) == 204
        response = pinned_request("GET", f"http://hooks.dual.test:{port}/x", True, headers={"Content-Length": "0"},
                                  timeout=5)
        assert response.status_code == 204
    finally:
        server.shutdown()


def test_an_https_receiver_is_trusted_through_a_ca_folder_as_the_image_fetch_trusts_it(tmp_path, monkeypatch):
    """REQUESTS_CA_BUNDLE naming a hashed folder of certificates (as requests takes it) failed every https
    delivery with IsADirectoryError while image fetches with the same setting worked."""
    import shutil
    import subprocess

    from shared.pinned_http import post_within

    if not shutil.which("openssl"):
        pytest.skip("needs openssl for the certificate hash")
    cert, key = _self_signed(tmp_path)
    folder = tmp_path / "cas"
    folder.mkdir()
    subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(cert)], capture_output=True,
                                  text=True, check=True).stdout.strip()
    shutil.copy(cert, folder / f"{subject_hash}.0")

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(folder))
    with _answering(tls=(cert, key)) as port:
        assert post_within(f"https://127.0.0.1:{port}/hook", b"{}", {}, True, 5) == 200


def test_lookups_left_running_by_a_stalling_name_server_are_bounded(monkeypatch):
    """Each submit naming a name whose server never answers left a lookup thread behind (the resolver holds it
    for a minute and more): they grew without bound. Past the bound none is started."""
    import socket
    import threading

    from shared import pinned_http

    release = threading.Event()
    started = []

    def stalls(*args, **kwargs):
        started.append(1)
        release.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", stalls)
    monkeypatch.setattr(pinned_http, "_LOOKUP_THREADS", threading.BoundedSemaphore(3))
    try:
        for index in range(6):
            assert refused_destination(f"http://stall-{index}.example.test/", False, resolve_seconds=0.05) is None
        assert len(started) == 3  # three left running; the next three were not started
    finally:
        release.set()
    gate = pinned_http._LOOKUP_THREADS
    for _ in range(50):  # the stalled lookups end and give their places back
        if gate._value == 3:
            break
        threading.Event().wait(0.05)
    assert gate._value == 3


def test_a_receiver_on_the_first_of_several_addresses_has_the_whole_timeout_to_answer(monkeypatch):
    """The first address's connect timeout (half the time with two addresses) stayed the socket's timeout for the
    whole exchange: a receiver of a name with an A and an AAAA record answering in 6 s of a 10 s timeout failed
    every attempt at 5 s."""
    import http.server
    import socket
    import threading
    import time

    from shared.pinned_http import post_within

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(1.3)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):  # the first address answers: the second is never tried
        if host == "hooks.two.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)),
                    (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", port, 0, 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    try:
        assert post_within(f"http://hooks.two.test:{server.server_address[1]}/hook", b"{}", {}, True, 2.0) == 204
    finally:
        server.shutdown()


def test_an_https_host_written_with_its_fully_qualified_dot_is_checked_against_its_certificate(tmp_path, monkeypatch):
    """``https://hooks.example.test./`` (the trailing dot of a fully qualified name, which curl and requests take)
    failed every delivery and image fetch: TLS was told the name with its dot, which no certificate names."""
    import socket

    from shared.pinned_http import pinned_request, post_within

    cert, key = _self_signed(tmp_path, "hooks.example.test")
    real = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):  # the name to loopback; the pinned address itself as it is
        if host == "hooks.example.test.":
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]
        assert host == "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with _answering(tls=(cert, key)) as port:
        url = f"https://hooks.example.test.:{port}/hook"
        assert post_within(url, b"{}", {}, True, 5) == 200
        assert pinned_request("GET", url, True, timeout=5).status_code == 200


def test_image_fetches_and_webhooks_connect_directly_whatever_proxy_the_environment_names(monkeypatch):
    """``requests`` took HTTP_PROXY from the environment for image fetches while webhooks connected directly: on a
    network whose only way out is a proxy, fetches worked and webhooks never did. Both connect directly now (the
    "proxy" here is a loopback server that answers 502 to whatever reaches it)."""
    from shared.pinned_http import pinned_request, post_within

    with _answering(200) as port, _answering(502) as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        url = f"http://127.0.0.1:{port}/image.png"
        assert pinned_request("GET", url, True, timeout=5).status_code == 200
        assert post_within(url, b"{}", {}, True, 5) == 200


@contextlib.contextmanager
def _answering(status: int = 200, tls: tuple | None = None):
    """A loopback HTTP (with ``tls``, a (cert, key) pair: HTTPS) server answering every GET and POST with
    ``status`` and no body; yields its port."""
    import http.server
    import ssl
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
