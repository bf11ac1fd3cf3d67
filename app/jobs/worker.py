"""The RQ worker class that runs every job inside a fresh application context."""

from __future__ import annotations

from rq import SimpleWorker, Worker

from app.extensions import db


class _AppContextMixin:
    flask_app = None

    def perform_job(self, job, queue, *args, **kwargs):
        with self.flask_app.app_context():
            try:
                return super().perform_job(job, queue, *args, **kwargs)
            finally:
                db.session.remove()


class AppWorker(_AppContextMixin, Worker):
    """Forks a work horse per job (production)."""


class AppSimpleWorker(_AppContextMixin, SimpleWorker):
    """Runs jobs in-process (tests)."""


def warm_up() -> None:
    """Do once, in the worker, what every forked work horse would otherwise redo for each
    job: configure the ORM mappers and initialise the database dialect (a few hundred ms
    per job on a busy host). No connection is left in the pool to cross the fork."""
    from sqlalchemy import text
    from sqlalchemy.orm import configure_mappers

    configure_mappers()
    db.session.execute(text("SELECT 1"))
    db.session.remove()
    db.engine.dispose()


def make_worker(app, queue_names, *, simple: bool = False, name: str | None = None):
    from app.redis_conn import get_redis

    cls = AppSimpleWorker if simple else AppWorker
    with app.app_context():
        conn = get_redis()
        if not simple:
            warm_up()
    worker = cls(queue_names, connection=conn, name=name)
    worker.flask_app = app
    return worker
