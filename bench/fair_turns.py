"""What choosing a fair turn costs a worker, per claim, as the jobs table and the waiting tenants grow.

    python bench/fair_turns.py                                   # SQLite: 300,000 jobs, 1,000 tenants waiting
    python bench/fair_turns.py --tenants 10 --queued 100         # few tenants, long backlogs
    python bench/fair_turns.py --database-url postgresql+psycopg://user@127.0.0.1:5432/bench   # an empty database

Every waiting tenant has ``--queued`` jobs waiting and ``--recent`` jobs started in the last few minutes; the rest of
``--jobs`` is history (finished hours ago). Printed: milliseconds per ``shared.jobs.next_fair_job`` call (the median
of ``--claims``), the query a worker makes before every claim (docs/operations.md, "Fair scheduling").
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared import jobs
from shared.db import make_engine, make_session_factory
from shared.migrate import upgrade
from shared.models import Job, utcnow


def jobs_to_store(tenants: int, queued: int, recent: int, total: int) -> list[dict]:
    now = utcnow()
    common = {"scale": 2, "model": "bicubic", "output_format": "png", "input_key": "k", "progress": 0.0,
              "output_width": 1000, "output_height": 1000}
    rows = []
    for t in range(tenants):
        tenant = f"tenant-{t:05d}"
        rows += [{"tenant": tenant, "status": "queued", "attempts": 0, "created_at": now - timedelta(seconds=300 - i)}
                 for i in range(queued)]
        rows += [{"tenant": tenant, "status": "succeeded", "attempts": 1, "created_at": now - timedelta(seconds=400),
                  "started_at": now - timedelta(seconds=200 - i), "finished_at": now - timedelta(seconds=199 - i)}
                 for i in range(recent)]
    history = max(0, total - len(rows))
    rows += [{"tenant": f"tenant-{i % max(tenants, 1):05d}", "status": "succeeded", "attempts": 1,
              "created_at": now - timedelta(hours=2, seconds=i), "started_at": now - timedelta(hours=2, seconds=i),
              "finished_at": now - timedelta(hours=2, seconds=i - 1)} for i in range(history)]
    return [{"id": uuid.uuid4().hex, **common, **row} for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300_000, help="rows in the jobs table in all")
    parser.add_argument("--tenants", type=int, default=1000, help="tenants with jobs waiting")
    parser.add_argument("--queued", type=int, default=2, help="jobs waiting per tenant")
    parser.add_argument("--recent", type=int, default=3, help="jobs per tenant started in the last minutes")
    parser.add_argument("--claims", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="an empty database (default: a temporary SQLite)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="upscaler-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        sessions = make_session_factory(make_engine(url))
        rows = jobs_to_store(args.tenants, args.queued, args.recent, args.jobs)
        with sessions() as session:
            for start in range(0, len(rows), 10_000):
                session.execute(Job.__table__.insert(), rows[start:start + 10_000])
            session.commit()
            turn = functools.partial(jobs.next_fair_job, max_attempts=3)
            message = rows[0]["id"]
            times = []
            for _ in range(args.claims):
                began = time.perf_counter()
                turn(session, message)
                times.append(time.perf_counter() - began)
                session.rollback()
        print(f"{len(rows):,} jobs, {args.tenants:,} tenants waiting with {args.queued} queued and {args.recent} "
              f"recent each ({url.split(':', 1)[0]}): {statistics.median(times) * 1000:.1f} ms per claim (median "
              f"of {args.claims})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
