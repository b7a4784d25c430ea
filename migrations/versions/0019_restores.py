"""restores are remembered, so that identifiers derived from row numbers issued again after a
restore (SR UIDs, ORU control IDs) differ from the lost rows' ones

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 08:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "restores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("backup_created_at", sa.String(length=64), nullable=False),
        sa.Column("revision_boundary", sa.BigInteger(), nullable=False),
        sa.Column("outbox_boundary", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restores")),
    )


def downgrade() -> None:
    op.drop_table("restores")
