"""patient merges are remembered, so what arrives later under the prior identifier follows;
studies say when the ADT feed set their patient

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 04:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "patient_merges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prior_patient_id", sa.String(length=64), nullable=False),
        sa.Column("prior_issuer", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.JSON(), nullable=False),
        sa.Column("event", sa.String(length=8), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_merges")),
    )
    op.create_index(
        op.f("ix_patient_merges_prior_patient_id"), "patient_merges", ["prior_patient_id"]
    )
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("patient_from_adt", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("patient_from_adt")
    op.drop_index(op.f("ix_patient_merges_prior_patient_id"), table_name="patient_merges")
    op.drop_table("patient_merges")
