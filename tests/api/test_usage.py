"""``GET /v1/usage``: each tenant reads its own limits and what it has used of them, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from openapi_spec_validator import validate

from api import create_app
from shared.tenants import create_key
from tests.conftest import image_bytes


def _submit(client, headers: dict, width: int, height: int, scale: int = 2) -> dict:
    response = client.post("/v1/jobs", headers=headers, content_type="multipart/form-data",
                           data={"image": (io.BytesIO(image_bytes(width=width, height=height)), "a.png"),
                                 "scale": str(scale), "model": "bicubic"})
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_each_tenant_reads_its_own_limits_and_use(client, db_session):
    """A customer pacing its uploads asked for its quota only by running into a 429: its key's own limits, the
    deployment's where the key has none, its queued and running jobs and today's megapixels, none of another's."""
    own, other = f"usage-{uuid.uuid4().hex[:8]}", f"usage-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, own, rate_limit=30, max_active=5, daily_megapixels=10)
    _, other_key = create_key(db_session, other)
    db_session.commit()
    mine, theirs = {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {other_key}"}
    fresh = client.get("/v1/usage", headers=mine)
    assert fresh.status_code == 200 and fresh.headers["Cache-Control"] == "no-store"
    assert fresh.headers["RateLimit"].startswith('"per-minute";r=')  # what is left this minute, as everywhere
    body = fresh.get_json()
    assert body["tenant"] == own
    assert body["requests"] == {"limit_per_minute": 30}
    assert body["active_jobs"] == {"queued": 0, "running": 0, "limit": 5}
    assert body["daily"]["used_megapixels"] == 0 and body["daily"]["limit_megapixels"] == 10
    assert body["daily"]["remaining_megapixels"] == 10
    resets = datetime.fromisoformat(body["daily"]["resets_at"])
    assert resets.utcoffset() == timedelta(0) and (resets.hour, resets.minute, resets.second) == (0, 0, 0)
    assert timedelta(0) < resets - datetime.now(UTC) <= timedelta(days=1)
    job = _submit(client, mine, 500, 400)  # 1000x800 out: 0.8 MP charged at submit
    _submit(client, theirs, 300, 300)
    used = client.get("/v1/usage", headers=mine).get_json()
    assert used["active_jobs"] == {"queued": 1, "running": 0, "limit": 5}
    assert used["daily"]["used_megapixels"] == pytest.approx(0.8)
    assert used["daily"]["remaining_megapixels"] == pytest.approx(9.2)
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=mine).status_code == 200  # never started: given back
    after = client.get("/v1/usage", headers=mine).get_json()
    assert after["active_jobs"]["queued"] == 0 and after["daily"]["used_megapixels"] == pytest.approx(0.0)
    defaults = client.get("/v1/usage", headers=theirs).get_json()  # a key without limits of its own
    assert defaults["tenant"] == other and defaults["active_jobs"]["queued"] == 1
    assert defaults["requests"]["limit_per_minute"] == 600 and defaults["active_jobs"]["limit"] == 100
    assert defaults["daily"]["used_megapixels"] == pytest.approx(0.36)
    assert defaults["daily"]["limit_megapixels"] == 20000


def test_unlimited_is_null_and_redis_away_leaves_only_the_count_unknown(settings, db_session):
    """0 in the settings means unlimited, which the API says as null (a 0 read as a limit of nothing); with Redis
    away the page still answers: the database's counts and the limits, the day's use null."""
    name = f"open-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name)
    db_session.commit()
    app = create_app(settings.with_overrides(redis_url="redis://127.0.0.1:9/0", rate_limit_per_minute=0,
                                             max_active_jobs=0, daily_megapixels=0))
    try:
        response = app.test_client().get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
    finally:
        app.extensions["upscaler"].engine.dispose()
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["requests"] == {"limit_per_minute": None}
    assert body["active_jobs"] == {"queued": 0, "running": 0, "limit": None}
    assert body["daily"]["used_megapixels"] is None and body["daily"]["limit_megapixels"] is None
    assert body["daily"]["remaining_megapixels"] is None


def test_usage_needs_a_key_and_is_in_the_openapi_document(client, db_session):
    create_key(db_session, f"closed-{uuid.uuid4().hex[:8]}")  # with a key in the database the API is not open
    db_session.commit()
    refused = client.get("/v1/usage")
    assert (refused.status_code, refused.get_json()["code"]) == (401, "unauthorized")
    spec = client.get("/v1/openapi.json").get_json()
    validate(spec)
    answer = spec["paths"]["/v1/usage"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/Usage"}
    assert set(spec["components"]["schemas"]["Usage"]["properties"]) == {"tenant", "requests", "active_jobs", "daily"}


def test_a_read_across_midnight_gives_the_count_and_the_reset_of_one_day(client, db_session, monkeypatch):
    """The day's count and its reset were read off two clock readings: a request at midnight UTC read the day that
    ended's count and the next day's end, a day used up that seemed to last 24 hours more."""
    from api.routes import usage
    from shared import quota

    name = f"midnight-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, daily_megapixels=10)
    db_session.commit()
    before = datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=UTC)
    readings = [before, before + timedelta(microseconds=2)]  # the clock's next reading is the next day

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return readings.pop(0) if len(readings) > 1 else readings[0]

    monkeypatch.setattr(quota, "datetime", Clock)
    monkeypatch.setattr(usage, "datetime", Clock)
    counts = client.application.extensions["upscaler"].redis
    counts.set(quota._day_key(name, before), "10", ex=60)
    daily = client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"}).get_json()["daily"]
    assert daily["used_megapixels"] == 10 and daily["remaining_megapixels"] == 0
    assert datetime.fromisoformat(daily["resets_at"]) == datetime(2026, 11, 30, tzinfo=UTC)  # that day's end
