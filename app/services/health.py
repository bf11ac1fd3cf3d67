"""The state of the parts the system needs, for ``/healthz`` and the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime

from rq import Worker
from sqlalchemy import text

from app.extensions import db
from app.redis_conn import get_redis


def health_report() -> dict:
    """Database and Redis reachability and the newest worker heartbeat (seconds ago)."""
    report: dict = {
        "database": {"ok": False},
        "redis": {"ok": False},
        "worker": {"ok": False, "count": 0, "last_heartbeat_seconds": None},
    }
    try:
        db.session.execute(text("SELECT 1"))
        report["database"] = {"ok": True, "dialect": db.engine.dialect.name}
    except Exception as exc:  # any driver error means "down"
        db.session.rollback()
        report["database"] = {"ok": False, "error": exc.__class__.__name__}
    try:
        conn = get_redis()
        conn.ping()
        report["redis"] = {"ok": True}
        workers = Worker.all(connection=conn)
        beats = [w.last_heartbeat for w in workers if w.last_heartbeat]
        if beats:
            newest = max(b if b.tzinfo else b.replace(tzinfo=UTC) for b in beats)
            age = (datetime.now(UTC) - newest).total_seconds()
            report["worker"] = {
                "ok": age < 120,
                "count": len(workers),
                "last_heartbeat_seconds": round(age, 1),
            }
        else:
            report["worker"] = {"ok": False, "count": 0, "last_heartbeat_seconds": None}
    except Exception as exc:
        report["redis"] = {"ok": False, "error": exc.__class__.__name__}
    return report
