"""Database URLs as operators paste them."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db import make_engine


def test_a_postgres_url_as_hosted_providers_give_it_connects(postgres):
    """``postgres://`` (Heroku, Render, Supabase...) was accepted, then crashed migrate and the API: SQLAlchemy
    knows only ``postgresql``."""
    url = postgres.create_database()
    engine = make_engine("postgres://" + url.split("://", 1)[1])
    try:
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("pooled", [True, False])
def test_a_database_error_does_not_carry_the_statements_values(database_url, pooled):
    """Logged, an error's text carried customers' webhook tokens, image_url signatures and signed result links."""
    engine = make_engine(database_url, pooled=pooled)
    try:
        with engine.connect() as connection, pytest.raises(DBAPIError) as raised:
            connection.execute(text("INSERT INTO no_such_table (url) VALUES (:url)"),
                               {"url": "http://127.0.0.1:9/hook?token=RECEIVER-SECRET"})
    finally:
        engine.dispose()
    assert "RECEIVER-SECRET" not in str(raised.value) and "no_such_table" in str(raised.value)


def test_times_read_from_a_server_in_a_local_zone_come_out_in_utc(postgres):
    """PostgreSQL answers in its session's TimeZone: on a server set to a local zone the API said
    ``...-04:00`` where the docs and SQLite say ``...Z``, and cursors and error messages carried the offset."""
    from datetime import UTC, datetime

    import psycopg
    from sqlalchemy import text

    from shared.db import make_engine
    from shared.migrate import upgrade
    from shared.models import Job, utcnow
    from tests.factories import make_job

    url = postgres.create_database()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'ALTER DATABASE "{name}" SET timezone TO \'America/New_York\'')
    upgrade(url)
    engine = make_engine(url)
    try:
        from sqlalchemy.orm import Session

        with Session(engine) as session:
            assert session.execute(text("show timezone")).scalar() == "America/New_York"
            made = utcnow()
            job = make_job(session, created_at=made)
            session.expire_all()
            read = session.get(Job, job.id).created_at
        assert read.utcoffset().total_seconds() == 0 and read == made and isinstance(read, datetime)
        assert read.tzinfo == UTC
    finally:
        engine.dispose()
