"""An index for fair turns: each tenant's jobs by start time (shared.jobs.next_fair_job).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 16:45:00
"""

from __future__ import annotations

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_tenant_started', 'jobs', ['tenant', 'started_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_tenant_started', table_name='jobs')
