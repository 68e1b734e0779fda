"""A tenant's jobs by status in submission order: the fair turn's pick of its oldest queued job, and the active-job
limit, which the narrower ``ix_jobs_tenant_status`` it replaces served alone (shared.jobs.next_fair_job,
shared.jobs.active_jobs).

The pick (``status = 'queued' AND tenant IN (...) ORDER BY created_at, id LIMIT 1``) ran on SQLite down
``ix_jobs_tenant_created_id`` from the tenant's oldest job, reading every job it ever had to reach the queued ones:
147 ms per turn with 300,000 jobs, at every job a worker takes. Built CONCURRENTLY on PostgreSQL (any invalid
leftover of an interrupted build dropped first), before the index it replaces is dropped.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29 18:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index('ix_jobs_tenant_status_created', table_name='jobs', if_exists=True,
                      postgresql_concurrently=True)
        op.create_index('ix_jobs_tenant_status_created', 'jobs', ['tenant', 'status', 'created_at', 'id'],
                        unique=False, postgresql_concurrently=True)
        op.drop_index('ix_jobs_tenant_status', table_name='jobs', if_exists=True, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index('ix_jobs_tenant_status', table_name='jobs', if_exists=True, postgresql_concurrently=True)
        op.create_index('ix_jobs_tenant_status', 'jobs', ['tenant', 'status'], unique=False,
                        postgresql_concurrently=True)
        op.drop_index('ix_jobs_tenant_status_created', table_name='jobs', postgresql_concurrently=True)
