"""The one way to write the audit log (R-80), and the check of its hash chain.

Every state change calls ``record`` inside the same transaction as the change,
so the change and its audit row commit or roll back together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from flask import has_request_context, request
from sqlalchemy import select, text

from app.extensions import db
from app.models import AuditLog
from app.timeutil import utcnow

GENESIS = "0" * 64
# Any fixed number works: it names the lock that serialises appends on PostgreSQL.
_PG_LOCK_KEY = 80_080_080


def _canonical(row: AuditLog) -> str:
    return json.dumps(
        [
            row.at.isoformat(timespec="microseconds"),
            row.actor_id,
            row.actor_name,
            row.action,
            row.target_type,
            row.target_id,
            row.details,
            row.ip,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def compute_hash(prev_hash: str, row: AuditLog) -> str:
    return hashlib.sha256((prev_hash + _canonical(row)).encode()).hexdigest()


def _client_ip() -> str:
    if not has_request_context():
        return ""
    return request.remote_addr or ""


def record(
    action: str,
    *,
    actor=None,
    target=None,
    target_type: str = "",
    target_id="",
    details: dict | None = None,
    ip: str | None = None,
) -> AuditLog:
    """Append one audit row to the current transaction.

    ``actor`` is a User (or None for the system); ``target`` a model instance whose
    table name and id become the target, or give ``target_type``/``target_id``.
    The caller commits. On PostgreSQL a transaction-scoped advisory lock makes
    concurrent appends queue, so two rows never claim the same predecessor; SQLite
    serialises writers by itself.
    """
    session = db.session
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    if target is not None:
        target_type = target_type or target.__tablename__
        target_id = target.id
    prev = session.execute(select(AuditLog.hash).order_by(AuditLog.id.desc()).limit(1)).scalar()
    row = AuditLog(
        at=utcnow(),
        actor_id=getattr(actor, "id", None),
        actor_name=getattr(actor, "username", "") or ("system" if actor is None else ""),
        action=action,
        target_type=target_type or "",
        target_id=str(target_id if target_id is not None else ""),
        details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str),
        ip=ip if ip is not None else _client_ip(),
        prev_hash=prev or GENESIS,
    )
    row.hash = compute_hash(row.prev_hash, row)
    session.add(row)
    session.flush()
    return row


@dataclass
class ChainReport:
    checked: int
    broken_id: int | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_id is None


def verify_chain(batch: int = 5000) -> ChainReport:
    """Walk the log in id order and return the first row whose link or hash is wrong."""
    prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = (
            db.session.execute(
                select(AuditLog).where(AuditLog.id > last_id).order_by(AuditLog.id).limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return ChainReport(checked, None)
        for row in rows:
            if row.prev_hash != prev:
                return ChainReport(checked, row.id, "link")
            if compute_hash(row.prev_hash, row) != row.hash:
                return ChainReport(checked, row.id, "content")
            prev = row.hash
            last_id = row.id
            checked += 1
        db.session.expunge_all()


def search(
    *,
    actor: str = "",
    action: str = "",
    target_type: str = "",
    target_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
):
    """A select over the log filtered as the auditor asked, newest first."""
    q = select(AuditLog)
    if actor:
        q = q.where(AuditLog.actor_name == actor)
    if action:
        q = q.where(AuditLog.action.startswith(action))
    if target_type:
        q = q.where(AuditLog.target_type == target_type)
    if target_id:
        q = q.where(AuditLog.target_id == target_id)
    if since:
        q = q.where(AuditLog.at >= since)
    if until:
        q = q.where(AuditLog.at < until)
    return q.order_by(AuditLog.id.desc())
