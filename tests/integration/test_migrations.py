"""The schema is built by the migrations, and they run down and up again cleanly."""

from pathlib import Path

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from app.extensions import db

MIGRATIONS = str(Path(__file__).resolve().parent.parent.parent / "migrations")


def test_migrations_match_the_models(app, db_backend):
    """Every table and column the models declare exists in the migrated database."""
    inspector = inspect(db.engine)
    tables = set(inspector.get_table_names())
    for table in db.metadata.sorted_tables:
        assert table.name in tables, f"no migration creates {table.name}"
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        missing = {c.name for c in table.columns} - columns
        assert not missing, f"{table.name} lacks {missing}"


def test_downgrade_to_base_and_up_again(app, db_backend):
    db.session.remove()
    downgrade(directory=MIGRATIONS, revision="base")
    assert "users" not in inspect(db.engine).get_table_names()
    upgrade(directory=MIGRATIONS)
    assert "audit_log" in inspect(db.engine).get_table_names()
