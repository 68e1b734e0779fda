"""What a job was charged against its tenant's daily quota, and when: given back once if it makes nothing.

Recorded where the charge is made (the API at submit, the worker when it fetches an ``image_url``), so a job
that fails or is canceled before it starts returns exactly what it was charged, to the day it was charged on,
and a job charged nothing (Redis unreachable, no quota) returns nothing.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('charged_megapixels', sa.Float(), nullable=True))
        batch.add_column(sa.Column('charged_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('charged_at')
        batch.drop_column('charged_megapixels')
