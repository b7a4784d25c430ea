"""Migrations run up and down on SQLite and Postgres and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

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
