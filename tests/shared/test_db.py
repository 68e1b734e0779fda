"""Database URLs as operators paste them."""

from sqlalchemy import text

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
