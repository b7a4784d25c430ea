"""orders keep their patient identifiers (PID-3), read back from the stored messages

An order stands for a study only if it names the study's patient (``radraft.orders``). Orders
received before this revision are read again from their stored message, so that a department
upgrading keeps its orders; one without PID-3 then names nobody and is not used.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_PATIENT_ID_CHARACTERS = 64


def pid3_identifiers(message: str) -> list[str]:
    """The ID of each PID-3 repetition of an ER7 message, read with its own delimiters.

    Kept here rather than imported from the gateway, so that this revision reads the same
    however the gateway's parser changes later. Escape sequences inside an identifier (rare)
    are left as they are, so such an order matches no study until the RIS sends it again.
    """
    if not message.startswith("MSH") or len(message) < 8:
        return []
    field, component, repetition = message[3], message[4], message[5]
    for line in message.replace("\n", "\r").split("\r"):
        if line.startswith("PID" + field):
            fields = line.split(field)
            if len(fields) <= 3:
                return []
            found = (part.split(component)[0].strip() for part in fields[3].split(repetition))
            return list(
                dict.fromkeys(i for i in found if i and len(i) <= MAX_PATIENT_ID_CHARACTERS)
            )
    return []


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("patient_ids", sa.JSON(), nullable=True))
    orders = sa.table(
        "orders",
        sa.column("id", sa.Integer()),
        sa.column("raw_message", sa.Text()),
        sa.column("patient_ids", sa.JSON()),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(orders.c.id, orders.c.raw_message)).all()
    for order_id, message in rows:
        connection.execute(
            orders.update()
            .where(orders.c.id == order_id)
            .values(patient_ids=pid3_identifiers(message or ""))
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("patient_ids")
