"""Indexes on the stored-object keys rows name, for the orphan sweep (shared.jobs.referenced_keys).

The sweep pages through the store and asks which keys a job or a band names; without these each page read every
job. On PostgreSQL they are built CONCURRENTLY (outside the migration's transaction): a plain CREATE INDEX blocks
writes to ``jobs`` for as long as it takes, while the previous release still serves on a large table.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 22:10:00
"""

from __future__ import annotations

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

JOB_KEYS = ('input_key', 'output_key', 'staged_output_key')


def upgrade() -> None:
    # an interrupted concurrent build leaves an INVALID index under its name, and every later upgrade failed on it
    # ("already exists"): dropped first, if there
    with op.get_context().autocommit_block():
        for column in JOB_KEYS:
            op.drop_index(f'ix_jobs_{column}', table_name='jobs', if_exists=True, postgresql_concurrently=True)
            op.create_index(f'ix_jobs_{column}', 'jobs', [column], unique=False, postgresql_concurrently=True)
        op.drop_index('ix_job_bands_result_key', table_name='job_bands', if_exists=True, postgresql_concurrently=True)
        op.create_index('ix_job_bands_result_key', 'job_bands', ['result_key'], unique=False,
                        postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index('ix_job_bands_result_key', table_name='job_bands', postgresql_concurrently=True)
        for column in reversed(JOB_KEYS):
            op.drop_index(f'ix_jobs_{column}', table_name='jobs', postgresql_concurrently=True)
