"""Signing (checked with the public standardwebhooks library) and the SSRF guard."""

import json

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.settings import Settings
from shared.webhooks import refused_destination, signed_headers, signing_secret


def test_signature_verifies_with_the_standardwebhooks_library():
    secret = signing_secret(Settings(secret_key="k" * 32))
    assert secret.startswith("whsec_")
    body = json.dumps({"type": "job.succeeded", "data": {"id": "x"}})
    headers = signed_headers(secret, "msg_1", body)
    assert Webhook(secret).verify(body, headers) == {"type": "job.succeeded", "data": {"id": "x"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("succeeded", "failed"), headers)


def test_configured_secret_wins_and_derived_secret_is_stable():
    assert signing_secret(Settings(webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")) == \
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert signing_secret(Settings(secret_key="a" * 32)) == signing_secret(Settings(secret_key="a" * 32))
    assert signing_secret(Settings(secret_key="a" * 32)) != signing_secret(Settings(secret_key="b" * 32))


@pytest.mark.parametrize("url", ["http://127.0.0.1/hook", "http://localhost:8080/x", "http://10.0.0.5/",
                                 "http://192.168.1.10/", "http://172.16.0.1/", "http://169.254.169.254/latest/",
                                 "http://[::1]/", "http://224.0.0.1/", "http://0.0.0.0/",
                                 "http://metadata.google.internal/", "ftp://93.184.216.34/", "file:///etc/passwd"])
def test_private_and_odd_destinations_are_refused(url):
    assert refused_destination(url, allow_private=False) is not None


def test_public_addresses_pass_and_private_ones_pass_when_allowed():
    assert refused_destination("https://93.184.216.34/hook", allow_private=False) is None
    assert refused_destination("http://127.0.0.1:9000/hook", allow_private=True) is None
    assert refused_destination("http://metadata.google.internal/", allow_private=True) is not None
