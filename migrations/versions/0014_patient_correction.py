"""studies keep the patient a refused re-send named, and count patient corrections

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_patient", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("patient_corrections", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("corrected_through_outbox_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("corrected_through_outbox_id")
        batch_op.drop_column("patient_corrections")
        batch_op.drop_column("claimed_patient")
