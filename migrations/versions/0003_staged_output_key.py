"""Jobs remember the result key an attempt is about to upload (orphan clean-up).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 21:33:51.284145
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staged_output_key', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('staged_output_key')
