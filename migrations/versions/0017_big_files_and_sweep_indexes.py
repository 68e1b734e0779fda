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


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        for column in ('input_bytes', 'output_bytes'):
            batch.alter_column(column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=True)
    with op.get_context().autocommit_block():
        for name, table, columns, where in PARTIAL:
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
            op.create_index(name, table, columns, unique=False, postgresql_where=sa.text(where),
                            sqlite_where=sa.text(where), postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _, _ in reversed(PARTIAL):
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
    with op.batch_alter_table('jobs') as batch:
        for column in ('output_bytes', 'input_bytes'):
            batch.alter_column(column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=True)
