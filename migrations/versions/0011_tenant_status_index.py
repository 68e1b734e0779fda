"""An index for the active-job limit: a tenant's jobs by status (shared.jobs.active_jobs).

The count runs in the transaction that adds a job (under SQLite's write lock); by tenant alone it read every job
the tenant ever had.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 20:10:00
"""

from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_tenant_status', 'jobs', ['tenant', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_tenant_status', table_name='jobs')
