"""A redelivered webhook message keeps its attempt count (the listing showed 0 beside its attempt log) and counts
its fresh retry budget from ``retries_from``, the attempts it had when it was sent again; ``leased_until`` says an
attempt is being made (claimed, not yet recorded), which a redelivery now waits for instead of sending the message
twice at once.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.add_column(sa.Column('retries_from', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('leased_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.drop_column('leased_until')
        batch.drop_column('retries_from')
