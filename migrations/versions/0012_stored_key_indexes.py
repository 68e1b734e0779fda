"""Indexes on the stored-object keys rows name, for the orphan sweep (shared.jobs.referenced_keys).

The sweep pages through the store and asks which keys a job or a band names; without these each page read every
job.

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
    for column in JOB_KEYS:
        op.create_index(f'ix_jobs_{column}', 'jobs', [column], unique=False)
    op.create_index('ix_job_bands_result_key', 'job_bands', ['result_key'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_job_bands_result_key', table_name='job_bands')
    for column in reversed(JOB_KEYS):
        op.drop_index(f'ix_jobs_{column}', table_name='jobs')
