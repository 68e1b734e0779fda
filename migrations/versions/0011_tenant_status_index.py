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
    # CONCURRENTLY on PostgreSQL (outside the migration's transaction), as 0012: a plain CREATE INDEX blocked writes
    # to ``jobs`` while the previous release still served (4 s per million rows measured)
    with op.get_context().autocommit_block():
        op.drop_index('ix_jobs_tenant_status', table_name='jobs', if_exists=True, postgresql_concurrently=True)
        op.create_index('ix_jobs_tenant_status', 'jobs', ['tenant', 'status'], unique=False,
                        postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index('ix_jobs_tenant_status', table_name='jobs', postgresql_concurrently=True)
