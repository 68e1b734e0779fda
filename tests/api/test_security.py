"""Browser-facing hardening: headers, cross-site writes, 405 Allow, the page's key storage."""

from __future__ import annotations

import io
from urllib.parse import urljoin

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


@pytest.mark.parametrize(("public_url", "origin", "status"), [
    ("https://up.example.com:443", "https://up.example.com", 202),
    ("https://up.example.com", "https://up.example.com:443", 202),
    ("http://up.example.com:80/", "http://up.example.com", 202),
    ("https://UP.example.com", "https://up.example.com", 202),
    ("https://up.example.com:8443", "https://up.example.com", 403),
    ("https://up.example.com", "http://up.example.com", 403)])
def test_the_public_urls_origin_is_compared_as_browsers_write_it(settings, public_url, origin, status):
    """``UPSCALER_PUBLIC_URL=https://host:443`` refused every upload of the page itself (its browser sends the
    origin without the default port)."""
    from api import create_app

    client = create_app(settings.with_overrides(public_url=public_url)).test_client()
    data = {"image": (io.BytesIO(image_bytes()), "a.png"), "model": "bicubic"}
    response = client.post("/v1/jobs", data=data, content_type="multipart/form-data",
                           headers={"Origin": origin, "Authorization": ""})
    assert response.status_code == status, response.get_json()


def test_method_not_allowed_says_what_is(client):
    response = client.delete("/v1/jobs")
    assert (response.status_code, response.get_json()["code"]) == (405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_links_ignore_a_forged_host_when_a_public_url_is_set(settings, db_session):
    from api import create_app
    from shared.tenants import env_tenant
    from tests.api.test_read import succeeded_job

    app = create_app(settings.with_overrides(public_url="https://upscale.example", api_keys="k-one"))
    job = succeeded_job(app, db_session, tenant=env_tenant("k-one"))
    body = app.test_client().get(f"/v1/jobs/{job.id}", headers={"Host": "evil.example",
                                                                 "Authorization": "Bearer k-one"}).get_json()
    assert body["result_url"].startswith("https://upscale.example/v1/files/")


def test_metrics_need_their_token_when_one_is_set_and_are_off_in_production(settings):
    from api import create_app

    guarded = create_app(settings.with_overrides(metrics_token="m-secret")).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer m-secret"}).status_code == 200
    production = create_app(settings.with_overrides(env="production", public_url="https://u.example")).test_client()
    assert production.get("/metrics").status_code == 404


def test_the_access_log_never_writes_query_strings():
    from cli.services import ACCESS_LOG_FORMAT

    assert "%(U)s" in ACCESS_LOG_FORMAT and "%(r)s" not in ACCESS_LOG_FORMAT and "%(q)s" not in ACCESS_LOG_FORMAT


def test_the_api_reference_and_the_error_table_are_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "docs/assets/swagger-ui-bundle.js" in page.get_data(as_text=True)
    assert "https://" not in page.get_data(as_text=True)
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert "v1/openapi.json" in client.get("/docs/assets/docs.js").get_data(as_text=True)
    assert client.get("/docs/assets/../../pyproject.toml").status_code == 404
    table = client.get("/docs/errors").get_data(as_text=True)
    problem = client.get("/v1/jobs/" + "0" * 32).get_json()
    anchor = problem["type"].split("#", 1)[1]
    assert problem["type"].startswith("/docs/errors#") and f'id="{anchor}"' in table
    slash = client.get("/docs/")  # was 404; the page's relative links need /docs itself
    assert (slash.status_code, slash.headers["Location"]) == (308, "../docs")
    # as a browser resolves it (RFC 3986; Werkzeug's test client joins a relative Location its own way)
    assert urljoin("http://localhost/docs/", slash.headers["Location"]) == "http://localhost/docs"


def test_a_refused_request_is_timed_from_its_own_start(client):
    """The latency clock starts before the hooks that refuse (it once started after them, so each refusal
    was recorded as the process's whole uptime)."""
    from prometheus_client import REGISTRY

    def seconds(name):
        return REGISTRY.get_sample_value(f"upscaler_http_request_duration_seconds_{name}",
                                         {"method": "POST", "route": "/v1/jobs"}) or 0.0

    total, count = seconds("sum"), seconds("count")
    response = client.post("/v1/jobs", data={"model": "bicubic"}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert seconds("count") == count + 1 and seconds("sum") - total < 5


def test_the_queue_depth_is_one_series_per_queue_in_multiprocess_mode(tmp_path):
    """Under gunicorn (PROMETHEUS_MULTIPROC_DIR set) a Gauge also wrote a per-process file, so from the second
    scrape on ``upscaler_queue_depth`` came out twice, once with a pid label and stale values. Run in a process
    of its own: prometheus_client chooses its multiprocess values at import."""
    import os
    import subprocess
    import sys

    script = """
from prometheus_client.parser import text_string_to_metric_families
from api.routes.metrics import queue_depths
from shared.metrics import exposition
exposition(queue_depths({"inference": 5, "webhooks": 0}))
text = exposition(queue_depths({"inference": 3, "webhooks": 1})).decode()
families = [f for f in text_string_to_metric_families(text) if f.name == "upscaler_queue_depth"]
print(len(families), sorted((s.labels["queue"], s.value, "pid" in s.labels) for s in families[0].samples))
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1 [('inference', 3.0, False), ('webhooks', 1.0, False)]"


def test_the_open_api_answers_only_to_names_that_cannot_be_rebound(client):
    """DNS rebinding: a page on attacker.example rebinds its name to 127.0.0.1 and sends Host and Origin both
    attacker.example; same-origin as far as every check knew, it listed, read and submitted the open API's jobs."""
    rebound = {"Host": "rebind.attacker.example:8000", "Origin": "http://rebind.attacker.example:8000",
               "Sec-Fetch-Site": "same-origin"}
    listed = client.get("/v1/jobs", headers=rebound)
    assert (listed.status_code, listed.get_json()["code"]) == (401, "unauthorized")
    posted = client.post("/v1/jobs", headers=rebound, data={"image_url": "http://127.0.0.1:9/x.png"},
                         content_type="multipart/form-data")
    assert posted.status_code == 401
    for direct in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "192.168.1.20:8000", "app.localhost"):
        assert client.get("/v1/jobs", headers={"Host": direct}).status_code == 200, direct


def test_a_made_up_method_is_counted_as_other_not_as_a_series_of_its_own(client):
    """Any client, before any key is asked, could add a series per method name it made up (24,177 series from
    1,500 requests: a scrape of 2.3 MB taking a second, until the API restarted)."""
    from shared.metrics import HTTP_REQUESTS

    def series() -> set[str]:
        return {sample.labels["method"] for metric in HTTP_REQUESTS.collect() for sample in metric.samples}

    for made_up in ("FROB1", "FROB2"):
        assert client.open("/v1/jobs", method=made_up).status_code == 405
    client.get("/healthz")
    assert "other" in series() and "GET" in series()
    assert not any(method.startswith("FROB") for method in series())
