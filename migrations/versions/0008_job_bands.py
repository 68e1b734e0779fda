"""Split jobs: a band counter on the job and one row per band.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bands_total', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('bands_done', sa.Integer(), server_default='0', nullable=False))
    op.create_table(
        'job_bands',
        sa.Column('job_id', sa.String(length=32), sa.ForeignKey('jobs.id', ondelete='CASCADE'), nullable=False),
        sa.Column('index', sa.Integer(), nullable=False),
        sa.Column('y0', sa.Integer(), nullable=False),
        sa.Column('y1', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('lease_owner', sa.String(length=128), nullable=True),
        sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('result_key', sa.String(length=255), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('job_id', 'index'),
    )
    op.create_index('ix_job_bands_status_updated', 'job_bands', ['status', 'updated_at'])


def downgrade() -> None:
    op.drop_index('ix_job_bands_status_updated', table_name='job_bands')
    op.drop_table('job_bands')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('bands_done')
        batch_op.drop_column('bands_total')
