"""Command-line tools: ``flask demo seed``, ``flask audit verify``, ``flask roles sync``."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from app.extensions import db


def init_cli(app: Flask) -> None:
    demo = AppGroup("demo", help="Demo data.")
    audit_cli = AppGroup("audit", help="The audit log.")
    roles_cli = AppGroup("roles", help="Roles and permissions.")

    @demo.command("seed")
    def demo_seed():
        """Seed the demo organisation and users when the database is empty."""
        from app.services.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo

        if seed_demo():
            click.echo(f"Seeded {len(DEMO_USERS)} demo users, password {DEMO_PASSWORD}.")
        else:
            click.echo("Users exist already; demo seed skipped.")
        from app.services.crm_demo import seed_demo_customers

        run = seed_demo_customers()
        if run is not None:
            click.echo(f"Imported {run.count_new} demo customers (CRM import #{run.id}).")

    @audit_cli.command("verify")
    def audit_verify():
        """Check the hash chain; exit 1 naming the first broken row."""
        from app.services.audit import verify_chain

        report = verify_chain()
        if report.ok:
            click.echo(f"audit chain OK: {report.checked} rows")
            return
        click.echo(
            f"audit chain BROKEN at row {report.broken_id} ({report.reason}); "
            f"{report.checked} rows before it are intact",
            err=True,
        )
        raise SystemExit(1)

    @roles_cli.command("sync")
    def roles_sync():
        """Bring the standard roles in line with the permission catalogue."""
        from app.services.org import ensure_roles

        ensure_roles()
        db.session.commit()
        click.echo("roles synchronised")

    app.cli.add_command(demo)
    app.cli.add_command(audit_cli)
    app.cli.add_command(roles_cli)

    from app.cli_crm import register as register_crm

    register_crm(app)
