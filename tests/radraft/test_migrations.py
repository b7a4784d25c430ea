"""Migrations run up and down on SQLite and Postgres and match the models."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from radraft.migrate import downgrade, upgrade
from radraft.models import Base


def test_upgrade_matches_models_and_downgrade_removes_everything(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
        tables = set(inspect(engine).get_table_names())
        expected = {
            "studies", "series", "instances", "drafting_jobs", "reports", "report_revisions",
            "users", "edit_sessions", "timing_events", "orders", "outbox", "audit_log",
        }  # fmt: skip
        assert expected <= tables
        downgrade(database_url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(database_url)
    finally:
        engine.dispose()


def test_orders_stored_before_patient_ids_get_them_from_their_own_message(
    database_url: str,
) -> None:
    """0009: an order must name the study's patient to be used, so orders received before the
    column existed are read again from their stored message, or an upgrade would silently drop
    every indication and order number of the studies in flight."""
    upgrade(database_url, "0008")
    messages = {
        "two ids": "MSH|^~\\&|RIS|H|R|H|1||ORM^O01|1|P|2.3\rPID|1||MRN1^^^HOSP~NAT9^^^STATE||X\r",
        "own delimiters": "MSH#$%\\&#RIS#H#R#H#1##ORM$O01#2#P#2.3\rPID#1##MRN2$$$HOSP##X\r",
        "no PID": "MSH|^~\\&|RIS|H|R|H|1||ORM^O01|3|P|2.3\rORC|NW|P1\r",
    }
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            for key, message in messages.items():
                connection.execute(
                    text(
                        "INSERT INTO orders (accession_number, message_type, order_control,"
                        " raw_message, received_at) VALUES (:key, 'ORM^O01', 'NW', :raw,"
                        " CURRENT_TIMESTAMP)"
                    ),
                    {"key": key, "raw": message},
                )
        upgrade(database_url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT accession_number, patient_ids FROM orders"))
            found = {key: json.loads(ids) if isinstance(ids, str) else ids for key, ids in rows}
    finally:
        engine.dispose()
    assert found == {"two ids": ["MRN1", "NAT9"], "own delimiters": ["MRN2"], "no PID": []}
