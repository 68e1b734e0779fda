"""The daily quota's count in Redis: a refused charge never touches it."""

import threading
from datetime import UTC, datetime

import pytest
import redis

from shared.quota import KEY_TTL_SECONDS, QuotaExceeded, _day_key, charge


@pytest.fixture
def client(settings):
    connection = redis.Redis.from_url(settings.redis_url)
    yield connection
    connection.close()


def _fresh(client, tenant: str) -> str:
    key = _day_key(tenant, datetime.now(UTC))
    client.delete(key)
    return key


def test_a_refused_charge_never_counts_even_for_a_moment(client):
    """It was added, then taken back when over: in between, a concurrent charge that fitted was refused against
    it until midnight. Checked and added on the server now: from Python no command changes the count."""
    key = _fresh(client, "quota-moment")
    assert charge(client, "quota-moment", 100, 90.0) is not None

    class Watched(redis.Redis):
        def incrbyfloat(self, *args, **kwargs):
            raise AssertionError("the count was changed from the client, outside the check")

    watched = Watched(connection_pool=client.connection_pool)
    with pytest.raises(QuotaExceeded) as refused:
        charge(watched, "quota-moment", 100, 20.0)
    assert "(90.0 used)" in str(refused.value) and refused.value.retry_after > 0
    assert float(client.get(key)) == 90.0
    fits = []
    threads = [threading.Thread(target=lambda: fits.append(charge(watched, "quota-moment", 100, 1.0)))
               for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fits) == 10 and all(fits) and float(client.get(key)) == 100.0
    with pytest.raises(QuotaExceeded):
        charge(watched, "quota-moment", 100, 0.5)  # 100 used: half a megapixel more is over


def test_a_refused_first_charge_of_a_day_leaves_no_count_and_a_counted_one_expires(client):
    key = _fresh(client, "quota-first")
    charge(client, "quota-first", 10, 4.0)
    with pytest.raises(QuotaExceeded):
        charge(client, "quota-first", 10, 7.0)
    assert float(client.get(key)) == 4.0 and 0 < client.ttl(key) <= KEY_TTL_SECONDS
    other = _fresh(client, "quota-none")
    assert charge(client, "quota-none", 0, 5.0) is None and not client.exists(other)  # 0: unlimited, not counted


def test_a_refund_to_a_redis_that_never_answers_gives_up_within_seconds(settings, caplog):
    """With 5 s to connect and 10 s to read, a Redis that accepts and never answers held a cancel request (and
    ``keys revoke --cancel-jobs``, per job) for 11 s. Loopback: a listener that never accepts nor answers."""
    import socket
    import time

    from shared.quota import refund

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        stalled = settings.with_overrides(redis_url=f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        started = time.monotonic()
        refund(stalled, "acme", (1.5, datetime.now(UTC)))
        assert time.monotonic() - started < 6
    finally:
        silent.close()
    assert "could not be given back" in caplog.text


def test_a_noted_charge_is_given_back_once_and_never_for_another_attempt(client):
    """A worker charging a fetched image notes the charge under the job until its record holds it. An attempt
    that fails before recording gives back only its own note: one whose lease was lost meanwhile must not give
    back the note of the worker that took the job over (that worker's charge would go uncounted)."""
    from shared.quota import give_back_pending, settle_pending

    key = _fresh(client, "quota-noted")
    taken_over = charge(client, "quota-noted", 100, 6.0, pending_job=("job-noted", "worker-b"))
    assert taken_over is not None and float(client.get(key)) == 6.0
    give_back_pending(client, "quota-noted", "job-noted", owner="worker-a")  # the attempt that lost its lease
    assert float(client.get(key)) == 6.0
    give_back_pending(client, "quota-noted", "job-noted")  # the next attempt, after worker-b was killed
    give_back_pending(client, "quota-noted", "job-noted")  # once only
    assert float(client.get(key)) == 0.0
    charge(client, "quota-noted", 100, 6.0, pending_job=("job-noted", "worker-c"))
    settle_pending(client, "job-noted", "worker-c")  # recorded on the job: its own ending refunds it, not the note
    give_back_pending(client, "quota-noted", "job-noted")
    assert float(client.get(key)) == 6.0


def test_attempts_that_overlap_each_have_their_own_charge_given_back_once(client):
    """Two attempts at one job overlap when the first loses its lease mid-fetch (its database away, its worker
    stalled) and charges late. One note per job held one charge: the later charge wrote over the earlier, so the
    attempt whose record was refused gave back nothing (the note was the other's), or a killed attempt's charge
    went missing for the next attempt. Either way the tenant paid twice for one job."""
    from shared.quota import give_back_pending, settle_pending

    key = _fresh(client, "quota-overlap")
    give_back_pending(client, "quota-overlap", "job-overlap")  # worker-b, having claimed it, before its charge
    charge(client, "quota-overlap", 100, 6.0, pending_job=("job-overlap", "worker-a"))  # the lost lease's, late
    charge(client, "quota-overlap", 100, 6.0, pending_job=("job-overlap", "worker-b"))
    give_back_pending(client, "quota-overlap", "job-overlap", owner="worker-a")  # its record refused
    assert float(client.get(key)) == 6.0
    settle_pending(client, "job-overlap", "worker-b")  # worker-b's record holds its charge
    give_back_pending(client, "quota-overlap", "job-overlap")
    assert float(client.get(key)) == 6.0

    key = _fresh(client, "quota-overlap-2")
    charge(client, "quota-overlap-2", 100, 6.0, pending_job=("job-overlap-2", "worker-b"))  # then killed
    charge(client, "quota-overlap-2", 100, 6.0, pending_job=("job-overlap-2", "worker-a"))  # the lost lease's
    give_back_pending(client, "quota-overlap-2", "job-overlap-2", owner="worker-a")  # its record refused
    give_back_pending(client, "quota-overlap-2", "job-overlap-2")  # worker-c, the next attempt: worker-b's back
    assert float(client.get(key)) == 0.0
