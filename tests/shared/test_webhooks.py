"""Signing (checked with the public standardwebhooks library) and the SSRF guard."""

import json

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.settings import Settings
from shared.webhooks import refused_destination, signed_headers, signing_secret


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
    part cannot be read off, is never public. Literal addresses only: nothing is resolved or contacted."""
    assert "non-public" in refused_destination(url, allow_private=False)


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
    assert str(refused.value) == "postgres resolves to a non-public address"


def _self_signed(folder):
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
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
