"""Jobs whose input is fetched from a URL: the URL, and input facts unknown until the worker has it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 07:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_url', sa.Text(), nullable=True))
        batch_op.alter_column('input_format', existing_type=sa.String(length=16), nullable=True)
        batch_op.alter_column('input_bytes', existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column('input_width', existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column('input_height', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('input_height', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('input_width', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('input_bytes', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('input_format', existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column('input_url')
