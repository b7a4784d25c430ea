"""edit session autosave

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 17:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("edit_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("autosave_findings", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("autosave_impression", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("autosave_base_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("autosaved_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("edit_sessions", schema=None) as batch_op:
        batch_op.drop_column("autosaved_at")
        batch_op.drop_column("autosave_base_version")
        batch_op.drop_column("autosave_impression")
        batch_op.drop_column("autosave_findings")
