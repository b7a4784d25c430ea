"""reader studies

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 17:06:55.666243
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "reader_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("protocol", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_studies")),
        sa.UniqueConstraint("name", name=op.f("uq_reader_studies_name")),
    )
    op.create_table(
        "study_readers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_study_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["reader_study_id"],
            ["reader_studies.id"],
            name=op.f("fk_study_readers_reader_study_id_reader_studies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_study_readers_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_readers")),
        sa.UniqueConstraint(
            "reader_study_id", "user_id", name=op.f("uq_study_readers_reader_study_id")
        ),
    )
    with op.batch_alter_table("study_readers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_study_readers_reader_study_id"), ["reader_study_id"], unique=False
        )

    op.create_table(
        "study_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_study_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("practice", sa.Boolean(), nullable=False),
        sa.Column("model_findings", sa.Text(), nullable=False),
        sa.Column("model_impression", sa.Text(), nullable=False),
        sa.Column("model_revision_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_revision_id"],
            ["report_revisions.id"],
            name=op.f("fk_study_cases_model_revision_id_report_revisions"),
        ),
        sa.ForeignKeyConstraint(
            ["reader_study_id"],
            ["reader_studies.id"],
            name=op.f("fk_study_cases_reader_study_id_reader_studies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_study_cases_study_id_studies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_cases")),
        sa.UniqueConstraint(
            "reader_study_id", "study_id", name=op.f("uq_study_cases_reader_study_id")
        ),
    )
    with op.batch_alter_table("study_cases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_study_cases_reader_study_id"), ["reader_study_id"], unique=False
        )

    op.create_table(
        "study_reads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_study_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("practice", sa.Boolean(), nullable=False),
        sa.Column("source_read_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("draft_findings", sa.Text(), nullable=True),
        sa.Column("draft_impression", sa.Text(), nullable=True),
        sa.Column("final_findings", sa.Text(), nullable=True),
        sa.Column("final_impression", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("feedback", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["study_cases.id"], name=op.f("fk_study_reads_case_id_study_cases")
        ),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["study_readers.id"], name=op.f("fk_study_reads_reader_id_study_readers")
        ),
        sa.ForeignKeyConstraint(
            ["reader_study_id"],
            ["reader_studies.id"],
            name=op.f("fk_study_reads_reader_study_id_reader_studies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_read_id"],
            ["study_reads.id"],
            name=op.f("fk_study_reads_source_read_id_study_reads"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_reads")),
        sa.UniqueConstraint("reader_id", "case_id", name=op.f("uq_study_reads_reader_id")),
    )
    with op.batch_alter_table("study_reads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_reads_reader_id"), ["reader_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_study_reads_reader_study_id"), ["reader_study_id"], unique=False
        )

    with op.batch_alter_table("edit_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("study_read_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_edit_sessions_study_read_id"), ["study_read_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_edit_sessions_study_read_id_study_reads"),
            "study_reads",
            ["study_read_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:

    with op.batch_alter_table("edit_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_edit_sessions_study_read_id_study_reads"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_edit_sessions_study_read_id"))
        batch_op.drop_column("study_read_id")

    with op.batch_alter_table("study_reads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_reads_reader_study_id"))
        batch_op.drop_index(batch_op.f("ix_study_reads_reader_id"))

    op.drop_table("study_reads")
    with op.batch_alter_table("study_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_cases_reader_study_id"))

    op.drop_table("study_cases")
    with op.batch_alter_table("study_readers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_readers_reader_study_id"))

    op.drop_table("study_readers")
    op.drop_table("reader_studies")
