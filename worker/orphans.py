"""The orphan sweep: stored objects that no job or band names are deleted once they are an hour old.

Every object the product writes is named by a row: a result or a band's key is recorded before its upload, an
upload's key is inserted with its job right after it is stored. Two windows leave an object no row names: an API
process killed between storing an upload and inserting its job, and a refused submit whose clean-up delete failed
(storage away at that moment). Nothing else would ever find those objects: they stayed stored, and billed, for
good. The sweep reads the store a page at a time, one page a sweep, resuming after the last key it read (a cursor
in Redis, lost without harm: the sweep starts over), so a store of millions of objects costs each sweep one list
call and one indexed query. Only the product's prefixes are read (``shared.storage.PREFIXES``): other data in a
shared bucket is never touched.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import redis

from shared import jobs
from shared.storage import PREFIXES, Storage, StorageError, StoredObject
from worker.context import WorkerContext

log = logging.getLogger(__name__)

# Far longer than any store-then-insert window (a request's whole life), so an upload whose row is being written
# is never taken for an orphan; the same age as the local backend's interrupted partial files.
ORPHAN_AGE = timedelta(hours=1)
PAGE = 1000
# deletes a sweep makes at most (on S3 a delete is two calls): 1,000 took the sweep past its time limit
DELETES = 100
CURSOR_KEY = "upscaler:orphan-sweep:after"


def remove_orphans(ctx: WorkerContext, page_size: int = PAGE, deletes: int = DELETES) -> int:
    """Read the next page of the store, delete its objects older than ``ORPHAN_AGE`` that no row names and move the
    cursor on; returns how many were deleted."""
    client = redis.Redis.from_url(ctx.settings.redis_url, socket_timeout=10)
    try:
        try:
            after = (client.get(CURSOR_KEY) or b"").decode()
        except redis.RedisError:
            after = ""  # from the start: a page read again is harmless
        try:
            page, following = next_page(ctx.storage, after, page_size)
        except StorageError as exc:  # storage away: the next sweep reads the same page
            log.warning("orphan sweep could not list the store: %s", exc)
            return 0
        removed, stopped_at = _delete_unnamed(ctx, page, deletes)
        if stopped_at is not None:  # more orphans than a sweep deletes: the next one reads on from the last gone
            following = stopped_at
        try:
            client.set(CURSOR_KEY, following)
        except redis.RedisError:
            log.warning("could not save the orphan sweep's position; it starts over next time")
        return removed
    finally:
        client.close()


def next_page(storage: Storage, after: str, page_size: int) -> tuple[list[StoredObject], str]:
    """The objects after the cursor ``after`` and the cursor to read on from: the last key read, or, where a prefix
    was read to its end, the next prefix's start (after the last prefix, the first again)."""
    prefix = after.partition("/")[0]
    if prefix not in PREFIXES:
        prefix, after = PREFIXES[0], ""
    page = storage.list_objects(f"{prefix}/", after, page_size)
    if len(page) < page_size:
        return page, f"{PREFIXES[(PREFIXES.index(prefix) + 1) % len(PREFIXES)]}/"
    return page, page[-1].key


def _delete_unnamed(ctx: WorkerContext, page: list[StoredObject], limit: int) -> tuple[int, str | None]:
    """Delete the page's old objects no row names, up to ``limit``; returns how many went and, when the limit cut
    the page short, the key of the last one (the cursor to read on from), else None."""
    old = [stored.key for stored in page if stored.age > ORPHAN_AGE]  # by the store's clock, not this machine's
    with ctx.sessions() as session:
        named = jobs.referenced_keys(session, old)
    removed, previous = 0, None
    for key in old:
        if key in named:
            continue
        if removed == limit:
            return removed, previous
        try:
            ctx.storage.delete(key)
        except StorageError:
            log.warning("could not delete orphan object %s; the next round tries again", key, exc_info=True)
            continue
        log.info("deleted orphan object %s (stored more than %s ago, named by no job)", key, ORPHAN_AGE)
        removed += 1
        previous = key
    return removed, None
