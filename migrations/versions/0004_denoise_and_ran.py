"""Jobs keep the denoise strength asked for and what ran (network, strength, input profile).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 06:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('denoise', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('ran', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('ran')
        batch_op.drop_column('denoise')
