"""Job persistence operations on both databases."""

import functools
import itertools

import pytest

from shared import job_bands, jobs
from shared.models import Job
from tests.factories import make_job, seconds_ago


def test_a_job_is_claimed_once(db_session):
    job = make_job(db_session)
    assert jobs.claim(db_session, job.id, "worker-a", 60, max_attempts=3)
    db_session.commit()
    assert not jobs.claim(db_session, job.id, "worker-b", 60, max_attempts=3)
    db_session.commit()
    db_session.refresh(job)
    assert (job.status, job.lease_owner, job.attempts) == ("running", "worker-a", 1)


def test_an_expired_lease_can_be_taken_over(db_session):
    job = make_job(db_session, status="running", lease_owner="dead", lease_expires_at=seconds_ago(5), attempts=1)
    assert jobs.claim(db_session, job.id, "worker-b", 60, max_attempts=3)
    db_session.commit()
    db_session.refresh(job)
    assert (job.lease_owner, job.attempts) == ("worker-b", 2)
    assert not jobs.renew(db_session, job.id, "dead", 60, 0.5)  # the old owner learns it lost the job


def test_a_job_that_used_its_attempts_is_not_taken_back_by_a_claim(db_session):
    """Past max_attempts a vanished worker's job is the sweeper's to fail (worker_lost): a worker's claim took it
    back anyway, so a job that kills its worker (Celery redelivers at once) ran past the limit, for ever."""
    job = make_job(db_session, status="running", lease_owner="dead", lease_expires_at=seconds_ago(5), attempts=3)
    assert jobs.next_fair_job(db_session, job.id, max_attempts=3) is None
    assert not jobs.claim(db_session, job.id, "worker-b", 60, max_attempts=3)
    assert jobs.next_fair_job(db_session, job.id, max_attempts=4) == job.id
    assert jobs.claim(db_session, job.id, "worker-b", 60, max_attempts=4)


def test_finished_jobs_cannot_be_claimed(db_session):
    job = make_job(db_session, status="succeeded")
    assert not jobs.claim(db_session, job.id, "w", 60, max_attempts=3)


def test_finish_requires_the_lease(db_session):
    job = make_job(db_session)
    jobs.claim(db_session, job.id, "w", 60, max_attempts=3)
    assert not jobs.finish(db_session, job.id, "intruder", jobs.JobStatus.SUCCEEDED)
    assert jobs.finish(db_session, job.id, "w", jobs.JobStatus.SUCCEEDED, output_key="r")
    db_session.commit()
    db_session.refresh(job)
    assert (job.status, job.lease_owner, job.output_key) == ("succeeded", None, "r")
    assert job.finished_at is not None


def test_cursor_pagination_walks_every_job_once_newest_first(db_session):
    created = [make_job(db_session, created_at=seconds_ago(100 - i)).id for i in range(7)]
    make_job(db_session, status="failed", created_at=seconds_ago(1))
    seen, cursor = [], None
    while True:
        page, cursor = jobs.list_jobs(db_session, "public", "queued", 3, cursor)
        seen += [j.id for j in page]
        if cursor is None:
            break
    assert seen == list(reversed(created))


def test_cursor_pages_of_jobs_created_at_the_same_instant_walk_each_once(db_session):
    at = seconds_ago(10)
    made = sorted((make_job(db_session, created_at=at).id for _ in range(5)), reverse=True)
    seen, cursor = [], None
    while True:
        page, cursor = jobs.list_jobs(db_session, "public", None, 2, cursor)
        seen += [j.id for j in page]
        if cursor is None:
            break
    assert seen == made


def _index_search(session, call, statement_has: str) -> tuple[str, list[str]]:
    """The index condition of the plan of the statement containing ``statement_has`` that ``call`` ran, and the
    whole plan: on PostgreSQL with sequential scans off (a test's handful of rows: the index, as at scale)."""
    from sqlalchemy import event

    statements = []
    engine = session.get_bind()

    def grab(_conn, _cursor, statement, parameters, _context, _many) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    statement, parameters = [(st, p) for st, p in statements if statement_has in " ".join(st.split())][-1]
    connection = session.connection()
    if engine.dialect.name == "sqlite":
        plan = [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
        searched = [step for step in plan if "USING" in step and "INDEX" in step]
    else:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = [row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)]
        searched = [step for step in plan if "Index Cond" in step]
    session.rollback()
    return (searched or [""])[0], plan


def test_a_deep_cursor_page_is_a_range_of_the_tenant_index_not_a_walk_past_the_newer_jobs(db_session):
    """``created_at < c OR (created_at = c AND id < i)`` is no range of ix_jobs_tenant_created_id: the index gave
    the tenant's jobs newest first and each was read and dropped until the cursor, so a page 50,000 jobs deep took
    17.8 ms instead of 3.3 (PostgreSQL, 300,000 jobs), and longer the deeper."""
    cursor = jobs.encode_cursor(Job(id="a" * 32, created_at=seconds_ago(1)))
    searched, plan = _index_search(db_session, lambda: jobs.list_jobs(db_session, "public", None, 10, cursor),
                                   "ORDER BY jobs.created_at DESC")
    assert "created_at" in searched, plan


def test_a_fair_turn_picks_the_tenants_oldest_queued_job_from_its_queued_jobs_alone(db_session):
    """The pick walked the tenant's jobs from its oldest (ix_jobs_tenant_created_id) to reach a queued one: on
    SQLite 147 ms per turn with 300,000 jobs, at every job a worker takes."""
    make_job(db_session)  # a message whose own job is gone: the turn goes to the pick
    searched, plan = _index_search(db_session, lambda: jobs.next_fair_job(db_session, "gone", max_attempts=3),
                                   "ORDER BY jobs.created_at, jobs.id LIMIT")
    assert "status" in searched and ("tenant" in searched or db_session.get_bind().dialect.name != "sqlite"), plan


def test_the_band_sweep_reads_the_bands_holding_objects_not_every_ended_job(db_session):
    """As a join, SQLite walked every ended job by its status index and then looked up its bands: 550-830 ms every
    sweep at 300,000 jobs with 3,000 split among them (2 ms now). Jobs are looked up by their key, per band."""
    if db_session.get_bind().dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans by its statistics: a test's empty tables say nothing of its plan at scale")
    searched, plan = _index_search(db_session, lambda: job_bands.stored_of_ended_jobs(db_session),
                                   "FROM job_bands")
    assert not any("ix_jobs_status" in step for step in plan), plan
    assert "id" in searched, plan


def test_garbage_cursor_is_rejected(db_session):
    with pytest.raises(jobs.InvalidCursor):
        jobs.list_jobs(db_session, "public", None, 10, "not-a-cursor!")


def test_expired_leases_are_requeued_then_failed_as_worker_lost(db_session, settings):
    from worker.context import WorkerContext
    from worker.sweeper import release_expired_leases

    retry = make_job(db_session, status="running", lease_owner="x", lease_expires_at=seconds_ago(1), attempts=1)
    give_up = make_job(db_session, status="running", lease_owner="x", lease_expires_at=seconds_ago(1), attempts=3)
    alive = make_job(db_session, status="running", lease_owner="y", lease_expires_at=seconds_ago(-60), attempts=1)
    ctx = WorkerContext.create(settings.with_overrides(max_attempts=3))
    requeued, failed = release_expired_leases(ctx)
    ctx.engine.dispose()
    db_session.expire_all()
    assert (requeued, failed) == ([retry.id], [give_up.id])
    states = {j.id: (j.status, j.error_code) for j in db_session.query(Job)}
    assert states[retry.id] == ("queued", None)
    assert states[give_up.id] == ("failed", "worker_lost")
    assert states[alive.id] == ("running", None)


def test_jobs_to_enqueue_finds_never_enqueued_and_stale(db_session):
    never = make_job(db_session, enqueued_at=None)
    stale = make_job(db_session, enqueued_at=seconds_ago(1000))
    make_job(db_session, enqueued_at=seconds_ago(1))
    make_job(db_session, status="running", enqueued_at=None)
    assert set(jobs.jobs_to_enqueue(db_session, stale_seconds=600)) == {never.id, stale.id}


def test_a_finish_committed_between_the_sweepers_read_and_write_is_kept(db_session, settings, monkeypatch):
    """Issue 10 #9: the lease release is a conditional UPDATE, so a worker's late finish is not overwritten."""
    from shared.db import make_engine, make_session_factory, unit_of_work
    from shared.states import JobStatus
    from worker.context import WorkerContext
    from worker.sweeper import release_expired_leases

    job = make_job(db_session, status="running", lease_owner="w1", lease_expires_at=seconds_ago(5), attempts=1)
    other = make_engine(settings.database_url)
    read = jobs.expired_leases

    def read_then_worker_finishes(session):
        found = read(session)
        with unit_of_work(make_session_factory(other)) as worker_session:  # the worker commits meanwhile
            assert jobs.finish(worker_session, job.id, "w1", JobStatus.SUCCEEDED, output_key="results/x/y.png",
                               progress=1.0)
        return found

    monkeypatch.setattr(jobs, "expired_leases", read_then_worker_finishes)
    ctx = WorkerContext.create(settings)
    assert release_expired_leases(ctx) == ([], [])
    ctx.engine.dispose()
    other.dispose()
    db_session.expire_all()
    kept = db_session.get(Job, job.id)
    assert (kept.status, kept.output_key) == ("succeeded", "results/x/y.png")


def test_a_flooding_tenant_goes_to_the_back_of_the_queue(db_session):
    """Fair scheduling: priority falls with the tenant's own waiting jobs, not with the global backlog."""
    flood = [make_job(db_session, tenant="a", created_at=seconds_ago(100 - i)) for i in range(30)]
    newcomer = make_job(db_session, tenant="b")
    priorities = [jobs.fair_priority(db_session, j.id) for j in flood]
    assert priorities[:2] == [0, 0] and priorities[-1] == 9 and priorities == sorted(priorities)
    assert jobs.fair_priority(db_session, newcomer.id) == 0
    for job in flood[:10]:
        job.status = "succeeded"
    db_session.commit()
    assert jobs.fair_priority(db_session, flood[10].id) == 0  # finished jobs no longer count against the tenant


def test_a_turn_goes_to_the_least_served_tenant_with_queued_jobs(db_session):
    """Fair at claim time, in worker time: tenant A's backlog was submitted first and A has been served since;
    B's jobs, submitted later, get the turn of A's messages until B has been served as many output pixels. Within
    the least served the message keeps its own job; a job taken back from a vanished worker keeps its turn; a
    gone job's turn goes to a queued one; jobs other workers claimed first are passed over."""
    next_fair_job = functools.partial(jobs.next_fair_job, max_attempts=3)

    big, small = {"output_width": 1280, "output_height": 1280}, {"output_width": 1000, "output_height": 1000}
    a_jobs = [make_job(db_session, tenant="acme", created_at=seconds_ago(100 - i), **big) for i in range(4)]
    a_jobs[0].status, a_jobs[0].started_at = "succeeded", seconds_ago(99.5)  # before A's oldest queued (98 s)
    a_jobs[1].status, a_jobs[1].started_at = "running", seconds_ago(50)  # one big job since: 1.6 MP
    b_jobs = [make_job(db_session, tenant="globex", created_at=seconds_ago(10 - i), **small) for i in range(3)]
    db_session.commit()
    assert next_fair_job(db_session, a_jobs[2].id) == b_jobs[0].id
    assert next_fair_job(db_session, b_jobs[1].id) == b_jobs[1].id  # B's own message keeps B's own job
    assert next_fair_job(db_session, a_jobs[2].id, passed=[b_jobs[0].id]) == b_jobs[1].id  # taken: the next one
    b_jobs[0].status, b_jobs[0].started_at = "succeeded", seconds_ago(1)  # 1.1 MP served: under A's 1.74
    db_session.commit()
    assert next_fair_job(db_session, a_jobs[3].id) == b_jobs[1].id
    b_jobs[1].status, b_jobs[1].started_at = "succeeded", seconds_ago(1)  # 2.2 MP: now A is the least served
    db_session.commit()
    assert next_fair_job(db_session, b_jobs[2].id) == a_jobs[2].id
    assert next_fair_job(db_session, a_jobs[3].id) == a_jobs[3].id  # A's own message keeps its own job
    vanished = make_job(db_session, tenant="globex", status="running", lease_owner="gone",
                        lease_expires_at=seconds_ago(5), started_at=seconds_ago(60))
    db_session.commit()
    assert next_fair_job(db_session, vanished.id) == vanished.id
    for job in (*a_jobs[2:], b_jobs[2]):
        job.status = "canceled"
    db_session.commit()
    assert next_fair_job(db_session, a_jobs[2].id) is None  # nothing queued: the turn is skipped


def test_fair_turns_owe_no_idle_time_and_charge_no_lost_or_free_runs(db_session):
    """Service counts from when a tenant began waiting, over ten minutes at most (a tenant that was idle is not
    owed the others' hour); a run lost with its worker is not charged; a job costs 0.1 MP more than its output
    (an image_url whose fetch failed has no output size, and held a worker all the same)."""
    next_fair_job = functools.partial(jobs.next_fair_job, max_attempts=3)

    hour = [make_job(db_session, tenant=t, status="succeeded", started_at=seconds_ago(3000 + i),
                     output_width=4000, output_height=4000) for t in ("acme", "globex") for i in range(5)]
    assert len(hour) == 10  # long ago: outside the window, whatever the backlog's age
    a_waiting = make_job(db_session, tenant="acme", created_at=seconds_ago(3600))
    recent = make_job(db_session, tenant="acme", status="succeeded", started_at=seconds_ago(60),
                      output_width=2000, output_height=2000)  # 4 MP in the window
    c_new = make_job(db_session, tenant="initech", created_at=seconds_ago(1))
    db_session.commit()
    assert next_fair_job(db_session, a_waiting.id) == c_new.id  # C owes nothing, A was served 4 MP lately
    for _ in range(42):  # C's turns: 42 failed fetches, no output size, 0.1 MP each: more than A's 4.1 MP
        make_job(db_session, tenant="initech", status="failed", started_at=seconds_ago(0.5), output_width=None,
                 output_height=None, scale=None, input_url="http://127.0.0.1:9/x.png")
    db_session.commit()
    assert next_fair_job(db_session, c_new.id) == a_waiting.id  # 4.2 MP > A's 4.1 MP: A's turn
    recent.status, recent.started_at = "queued", seconds_ago(60)  # its worker vanished: queued again, not charged
    db_session.commit()
    assert next_fair_job(db_session, c_new.id) == a_waiting.id


def test_a_tenant_that_sends_each_job_as_its_last_one_starts_gets_half_the_turns_not_all(db_session):
    """One worker, two tenants with work all the time: globex queued a backlog; acme keeps one job waiting,
    sending the next as soon as its previous one starts (a client with a small pipeline). Served counted from
    each tenant's own oldest queued job, acme was never charged and took 11 of 12 turns; over one span for all,
    the turns alternate."""
    next_fair_job = functools.partial(jobs.next_fair_job, max_attempts=3)
    megapixel = {"output_width": 1000, "output_height": 1000}
    backlog = [make_job(db_session, tenant="globex", created_at=seconds_ago(300 - i), **megapixel)
               for i in range(20)]
    clock = 200.0
    make_job(db_session, tenant="acme", created_at=seconds_ago(clock), **megapixel)
    db_session.commit()
    turns, running = [], None
    for _ in range(12):
        clock -= 5
        if running is not None:
            running.status, running.finished_at = "succeeded", seconds_ago(clock)
            db_session.commit()
        running = db_session.get(Job, next_fair_job(db_session, backlog[-1].id))  # a globex message's turn
        running.status, running.started_at = "running", seconds_ago(clock)
        turns.append(running.tenant)
        if running.tenant == "acme":
            make_job(db_session, tenant="acme", created_at=seconds_ago(clock - 0.5), **megapixel)
        db_session.commit()
    assert turns.count("acme") == turns.count("globex") == 6
    assert all(a != b for a, b in itertools.pairwise(turns))
