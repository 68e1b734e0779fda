"""A tenant's webhook signing secret can be rotated on its own: a version mixed into its derivation, and until
when the previous one still signs (each message then carries both signatures, so receivers switch at leisure).

Version 0 is the derivation of before, so every existing receiver keeps verifying.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('webhook_secret_version', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('webhook_secret_previous_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('webhook_secret_previous_until')
        batch.drop_column('webhook_secret_version')
