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
