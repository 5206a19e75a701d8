"""lifecycle: retries, the reaper's and retention's indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLES = ("jobs", "videos")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("retry_of", sa.String(36), nullable=True))
        # The reaper reads active records by state; retention reads terminal ones by finished_at.
        op.create_index(f"ix_{table}_state", table, ["state"])
        op.create_index(f"ix_{table}_finished", table, ["finished_at"])


def downgrade() -> None:
    for table in _TABLES:
        op.drop_index(f"ix_{table}_finished", table_name=table)
        op.drop_index(f"ix_{table}_state", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("retry_of")
