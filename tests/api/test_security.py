"""Browser-facing hardening: headers, cross-site writes, 405 Allow, the page's key storage."""

from __future__ import annotations

import io

import pytest

from tests.conftest import image_bytes


def test_the_page_runs_under_a_strict_policy(client):
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.get_data(as_text=True)  # no inline script for the policy to allow
    script = client.get("/assets/app.js")
    assert script.status_code == 200 and "localStorage" not in script.get_data(as_text=True)
    assert client.get("/assets/secrets.txt").status_code == 404


@pytest.mark.parametrize("path", ["/", "/v1/jobs", "/healthz", "/v1/nothing"])
def test_every_response_is_nosniff_and_sends_no_referrer(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "null"}])
def test_a_browser_post_from_another_site_is_refused(client, headers):
    data = {"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"}
    response = client.post("/v1/jobs", data=data, content_type="multipart/form-data", headers=headers)
    assert (response.status_code, response.get_json()["code"]) == (403, "cross_site_request")
    assert client.get("/v1/jobs").get_json()["data"] == []  # nothing was created


@pytest.mark.parametrize("headers", [{}, {"Origin": "http://localhost"}, {"Sec-Fetch-Site": "same-origin"}])
def test_scripts_and_our_own_page_may_post(client, headers):
    data = {"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"}
    response = client.post("/v1/jobs", data=data, content_type="multipart/form-data", headers=headers)
    assert response.status_code == 202, response.get_json()


def test_method_not_allowed_says_what_is(client):
    response = client.delete("/v1/jobs")
    assert (response.status_code, response.get_json()["code"]) == (405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
