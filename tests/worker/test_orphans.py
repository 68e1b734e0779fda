"""The orphan sweep: stored objects no row names are deleted once old, a page of the store a sweep."""

import os
import time
from dataclasses import replace

import pytest
import redis

from shared.models import JobBand
from shared.storage import PREFIXES
from tests.factories import make_job
from worker import orphans, sweeper
from worker.context import WorkerContext


def put_aged(ctx, key: str, hours: float) -> None:
    ctx.storage.put_bytes(key, b"x", "image/png")
    then = time.time() - hours * 3600
    os.utime(ctx.storage.path_for(key), (then, then))


@pytest.fixture
def clean_cursor(settings):
    client = redis.Redis.from_url(settings.redis_url)
    client.delete(orphans.CURSOR_KEY)
    yield
    client.delete(orphans.CURSOR_KEY)
    client.close()


def test_old_objects_no_row_names_are_deleted_and_every_named_or_young_one_stays(ctx, db_session, clean_cursor):
    """An upload stored by an API killed before it inserted the job's row stayed stored for good."""
    named = {"inputs/001/in.png", "results/001/out.png", "results/001/staged.png", "bands/001/band.raw",
             "inputs/002/expired.png"}
    for key in named | {"inputs/003/orphan.png", "results/003/orphan.png", "bands/003/orphan.raw"}:
        put_aged(ctx, key, hours=2)
    put_aged(ctx, "inputs/004/just-stored.png", hours=0.5)  # its row may be being written right now
    put_aged(ctx, "other/005/not-ours.png", hours=48)  # not the product's: never read
    job = make_job(db_session, status="running", input_key="inputs/001/in.png", output_key="results/001/out.png",
                   staged_output_key="results/001/staged.png")
    db_session.add(JobBand(job_id=job.id, index=0, y0=0, y1=8, result_key="bands/001/band.raw"))
    make_job(db_session, status="succeeded", input_key="inputs/002/expired.png")
    db_session.commit()

    removed = sum(orphans.remove_orphans(ctx) for _ in PREFIXES)  # one prefix a sweep at this size

    assert removed == 3
    for key in named | {"inputs/004/just-stored.png", "other/005/not-ours.png"}:
        assert ctx.storage.exists(key), key
    for key in ("inputs/003/orphan.png", "results/003/orphan.png", "bands/003/orphan.raw"):
        assert not ctx.storage.exists(key), key


def test_the_sweep_reads_one_page_a_pass_resumes_after_it_and_wraps_around(ctx, db_session, clean_cursor):
    for index in range(5):
        put_aged(ctx, f"inputs/00{index}/orphan.png", hours=2)
    put_aged(ctx, "results/000/orphan.png", hours=2)
    cursor = redis.Redis.from_url(ctx.settings.redis_url)
    passes = []
    for _ in range(6):
        passes.append((orphans.remove_orphans(ctx, page_size=2), cursor.get(orphans.CURSOR_KEY).decode()))
    cursor.close()
    assert passes == [(0, "inputs/"),  # bands/ read to its end (empty): inputs/ next
                      (2, "inputs/001/orphan.png"), (2, "inputs/003/orphan.png"),
                      (1, "results/"),  # a short page ends the prefix
                      (1, "bands/"),  # the last prefix read: round again
                      (0, "inputs/")]
    assert [s.key for prefix in PREFIXES for s in ctx.storage.list_objects(f"{prefix}/", "", 10)] == []


def test_a_sweep_runs_the_orphan_page_and_reports_it(settings, db_session, clean_cursor):
    ctx = WorkerContext.create(settings)
    try:
        put_aged(ctx, "bands/000/orphan.raw", hours=2)
        report = sweeper.sweep(ctx, ctx.celery)
    finally:
        ctx.engine.dispose()
    assert report.orphans == 1


def test_an_unreachable_store_or_redis_skips_the_page_without_failing_the_sweep(settings, ctx, monkeypatch):
    def away(*args, **kwargs):
        raise sweeper.StorageError("S3 unreachable")

    monkeypatch.setattr(ctx.storage, "list_objects", away)
    assert orphans.remove_orphans(ctx) == 0
    monkeypatch.undo()
    put_aged(ctx, "bands/000/orphan.raw", hours=2)
    broken = replace(ctx, settings=settings.with_overrides(redis_url="redis://127.0.0.1:1/0"))
    assert orphans.remove_orphans(broken) == 1  # no cursor to read: from the start



def test_a_sweep_deletes_at_most_its_share_and_the_next_reads_on_from_there(ctx, db_session, clean_cursor):
    """1,000 deletes (two S3 calls each) took a sweep past its time limit: a sweep deletes at most DELETES, and the
    cursor stops at the last one gone, so the next sweep lists the rest again."""
    for index in range(5):
        put_aged(ctx, f"bands/00{index}/orphan.raw", hours=2)
    assert [orphans.remove_orphans(ctx, deletes=2) for _ in range(4)] == [2, 2, 1, 0]
    assert ctx.storage.list_objects("bands/", "", 10) == []
