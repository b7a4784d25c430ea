"""one report per study; order control, class and procedure; study procedure and timezone

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_study_id"))
        batch_op.create_index(batch_op.f("ix_reports_study_id"), ["study_id"], unique=True)

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("order_control", sa.String(length=2), server_default="NW", nullable=False)
        )
        batch_op.add_column(sa.Column("procedure", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("patient_class", sa.String(length=8), nullable=True))

    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issuer_of_patient_id", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("requested_procedure_id", sa.String(length=16), nullable=True)
        )
        batch_op.add_column(sa.Column("dicom_study_id", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("procedure_code", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("timezone_offset", sa.String(length=5), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("timezone_offset")
        batch_op.drop_column("procedure_code")
        batch_op.drop_column("dicom_study_id")
        batch_op.drop_column("requested_procedure_id")
        batch_op.drop_column("issuer_of_patient_id")

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("patient_class")
        batch_op.drop_column("procedure")
        batch_op.drop_column("order_control")

    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_study_id"))
        batch_op.create_index(batch_op.f("ix_reports_study_id"), ["study_id"], unique=False)
