"""``flask crm ...``: the CRM import from the command line (R-20).

``flask crm import PATH`` runs synchronously in this process (no worker needed) and
prints the report; it exits with status 1 when the import failed, so cron or an operator
script notices.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from app.extensions import db


def _user(username: str | None):
    from app.models import User

    if not username:
        return None
    user = db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise click.BadParameter(f"no user {username!r}", param_hint="--user")
    return user


def _run_now(run_id: int) -> None:
    from app.services import crm_import

    shown = [-10]

    def progress(percent, rows, phase):
        if phase == "reading" and percent is not None and percent - shown[0] < 10:
            return
        shown[0] = percent if percent is not None else shown[0]
        click.echo(f"  {phase} {'' if percent is None else f'{percent}% '}({rows} rows)", err=True)

    run = crm_import.run_import(run_id, on_progress=progress)
    click.echo(crm_import.report_text(run))
    if run.status != "succeeded":
        raise SystemExit(1)


def register(app: Flask) -> None:
    crm = AppGroup("crm", help="The CRM import (docs/crm-import.md).")

    @crm.command("import")
    @click.argument("path", type=click.Path(dir_okay=False))
    @click.option("--user", "username", help="Record the import as started by this user.")
    def import_file(path: str, username: str | None):
        """Import the CRM extract PATH now and print the report."""
        from app.services import crm_import

        run = crm_import.create_file_run(path, source="cli", user=_user(username))
        db.session.commit()
        _run_now(run.id)

    @crm.command("import-sql")
    @click.option("--user", "username", help="Record the import as started by this user.")
    def import_sql(username: str | None):
        """Import the rows of CRM_SQL_QUERY on CRM_DATABASE_URL now."""
        from app.services import crm_import
        from app.services.errors import DomainError

        try:
            run = crm_import.create_sql_run(user=_user(username))
        except DomainError as exc:
            raise click.ClickException(str(exc.message)) from None
        db.session.commit()
        _run_now(run.id)

    @crm.command("pickup")
    def pickup():
        """Queue the daily pick-up now (the newest customers_YYYYMMDD.csv not imported)."""
        from app.jobs.imports import daily_import

        run_id = daily_import()
        click.echo(f"queued import run #{run_id}" if run_id else "nothing new to import")

    app.cli.add_command(crm)
