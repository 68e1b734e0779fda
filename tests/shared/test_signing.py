from shared.signing import signed_query, verify

SECRET = "s" * 32


def test_valid_link_verifies():
    q = signed_query(SECRET, "results/a/b.png", ttl=60, now=1000)
    assert verify(SECRET, "results/a/b.png", q["expires"], q["signature"], now=1030) is None


def test_tampered_key_signature_or_expiry_is_rejected():
    q = signed_query(SECRET, "results/a/b.png", ttl=60, now=1000)
    assert verify(SECRET, "results/a/c.png", q["expires"], q["signature"], now=1000) == "invalid_signature"
    assert verify(SECRET, "results/a/b.png", str(int(q["expires"]) + 1), q["signature"], now=1000) == \
        "invalid_signature"
    assert verify(SECRET, "results/a/b.png", q["expires"], "0" * 64, now=1000) == "invalid_signature"
    assert verify("other" * 8, "results/a/b.png", q["expires"], q["signature"], now=1000) == "invalid_signature"
    assert verify(SECRET, "results/a/b.png", "soon", q["signature"], now=1000) == "invalid_signature"


def test_the_download_name_is_signed_with_the_link():
    q = signed_query(SECRET, "results/a/b.png", ttl=60, now=1000, name="shot_x4.png")
    assert q["name"] == "shot_x4.png"
    assert verify(SECRET, "results/a/b.png", q["expires"], q["signature"], now=1000, name="shot_x4.png") is None
    for other in ("Pay_now.png", None):
        assert verify(SECRET, "results/a/b.png", q["expires"], q["signature"], now=1000, name=other) == \
            "invalid_signature"


def test_expired_link_is_rejected():
    q = signed_query(SECRET, "k", ttl=60, now=1000)
    assert verify(SECRET, "k", q["expires"], q["signature"], now=1061) == "link_expired"


def test_a_non_ascii_signature_is_an_invalid_signature_not_an_error():
    q = signed_query(SECRET, "k", ttl=60, now=1000)
    assert verify(SECRET, "k", q["expires"], "é" * 64, now=1000) == "invalid_signature"  # it once raised TypeError


def test_a_link_with_a_non_ascii_signature_is_refused_as_forged(client):
    response = client.get("/v1/files/results/a.png?expires=99999999999&signature=%C3%A9")
    assert response.status_code == 403 and response.get_json()["code"] == "invalid_signature"


def test_a_link_signed_before_names_were_still_opens_until_it_expires():
    """Signing the name turned every link already handed out (a webhook's, resent for ten hours) into a 403 at
    the upgrade. The old form is taken for links expiring by the cut-off, never for later ones."""
    import hashlib
    import hmac

    from shared.signing import LEGACY_LINKS_EXPIRE_BY

    def old_form(expires: int) -> str:
        return hmac.new(SECRET.encode(), f"results/a/b.png\n{expires}".encode(), hashlib.sha256).hexdigest()

    soon = LEGACY_LINKS_EXPIRE_BY - 3600
    for name in ("shot_x4.png", None):
        assert verify(SECRET, "results/a/b.png", str(soon), old_form(soon), now=soon - 60, name=name) is None
    later = LEGACY_LINKS_EXPIRE_BY + 3600
    assert verify(SECRET, "results/a/b.png", str(later), old_form(later), now=later - 60) == "invalid_signature"
