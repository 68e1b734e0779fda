"""Any output size: a fractional scale, or a target width/height with a fit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 07:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('scale', existing_type=sa.Integer(), type_=sa.Float(), nullable=True)
        batch_op.add_column(sa.Column('target_width', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('target_height', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('fit', sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('fit')
        batch_op.drop_column('target_height')
        batch_op.drop_column('target_width')
        batch_op.alter_column('scale', existing_type=sa.Float(), type_=sa.Integer(), nullable=False)
