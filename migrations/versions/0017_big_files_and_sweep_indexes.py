"""Byte counts of 64 bits, and partial indexes for the retention pass and the webhook tenant cap.

``input_bytes`` and ``output_bytes`` were 32-bit on PostgreSQL: a result past 2 GiB (a 1,000 MP 16-bit poster)
could not be recorded, and its job failed after all its work. Widening them rewrites ``jobs`` on PostgreSQL under
an exclusive lock (about 25 s per million rows measured for a like rewrite): docs/deploy.md says to plan the
upgrade for a quiet moment. The retention pass looked for the oldest ended jobs not yet expired with no index to
serve it, reading the whole table (which only grows: rows stay after expiry) every sweep; the webhook tenant cap
counts the attempts being made, a handful, which a partial index on ``leased_until`` finds at once. Both are built
CONCURRENTLY on PostgreSQL (any invalid leftover of an interrupted build dropped first).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29 10:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

PARTIAL = (('ix_jobs_retention', 'jobs', ['finished_at', 'id'], 'expired_at IS NULL'),
           ('ix_webhook_deliveries_leased', 'webhook_deliveries', ['leased_until'], 'leased_until IS NOT NULL'))


def _byte_counts(new: type[sa.types.TypeEngine], old: type[sa.types.TypeEngine]) -> None:
    """Both columns in one statement on PostgreSQL (one rewrite of ``jobs``, not one per column: twice the lock);
    SQLite's batch mode copies the table once anyway."""
    if op.get_bind().dialect.name == 'postgresql':
        kind = new().compile(dialect=op.get_bind().dialect)
        op.execute(f'ALTER TABLE jobs ALTER COLUMN input_bytes TYPE {kind}, ALTER COLUMN output_bytes TYPE {kind}')
        return
    with op.batch_alter_table('jobs') as batch:
        for column in ('input_bytes', 'output_bytes'):
            batch.alter_column(column, type_=new(), existing_type=old(), existing_nullable=True)


def upgrade() -> None:
    _byte_counts(sa.BigInteger, sa.Integer)
    with op.get_context().autocommit_block():
        for name, table, columns, where in PARTIAL:
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
            op.create_index(name, table, columns, unique=False, postgresql_where=sa.text(where),
                            sqlite_where=sa.text(where), postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _, _ in reversed(PARTIAL):
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
    _byte_counts(sa.Integer, sa.BigInteger)
