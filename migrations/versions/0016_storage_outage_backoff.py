"""A job an object-storage outage stopped waits before it runs again (``retry_at``) and fails only once outages have
kept it from finishing for a grace period counted from ``outage_since``: before, each outage hand-back used one of
``UPSCALER_MAX_ATTEMPTS`` and the next attempt came at the sweeper's next pass, so a 30-60 s outage failed every
queued job ``storage_failed``.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('outage_since', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('outage_since')
        batch.drop_column('retry_at')
