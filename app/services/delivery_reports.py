"""Delivery reports from the carriers (R-51, R-52): what happened to a submitted SMS.

Reports come from Kannel's dlr-url callbacks, from other carriers' signed JSON, and from
the simulator. They are applied here, the same way for all:

- ``accepted`` / ``buffered`` (the SMSC took it, or holds it): a recipient still queued
  or unknown becomes ``submitted`` (a report may overtake the worker's own record of the
  submission, and it settles an ``unknown``); nothing is stored.
- ``delivered`` / ``failed``: final. The report is stored once under its ``dedupe_key``
  (a repeat changes nothing); the first final report wins, later ones are kept as
  evidence but do not flip the outcome.
- A report naming no recipient we have is logged and kept with ``recipient_id`` NULL,
  and the carrier gets its 200 so it stops retrying.

Per-recipient changes are not audited one by one (hundreds of millions of rows and the
audit chain's lock); the stored report is the evidence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import DeliveryReport, Recipient
from app.services import frequency_caps
from app.timeutil import utcnow

log = logging.getLogger(__name__)

OUTCOMES = ("accepted", "buffered", "delivered", "failed")
# Kannel's report types (dlr-mask bits): 1 delivered, 2 failed, 4 buffered, 8 accepted by
# the SMSC, 16 rejected by the SMSC.
KANNEL_TYPES = {1: "delivered", 2: "failed", 4: "buffered", 8: "accepted", 16: "failed"}
DETAIL_MAX = 500


@dataclass(frozen=True)
class ReportResult:
    known: bool  # the recipient exists
    stored: bool  # a new final report row was written
    changed: bool  # the recipient's status changed


def _insert_ignore(table, values: dict) -> bool:
    """INSERT unless the unique dedupe key exists; True when a row was written."""
    dialect = db.session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = (
        module.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.id)
    )
    return db.session.execute(stmt).first() is not None


def apply_report(
    *,
    gateway: str,
    recipient_id: int | None,
    outcome: str,
    code: str = "",
    detail: str = "",
    dedupe_key: str | None = None,
) -> ReportResult:
    """Apply one carrier report; the caller commits. ``ValueError`` for an unknown outcome."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown report outcome {outcome!r}")
    detail = (detail or "")[:DETAIL_MAX]
    now = utcnow()
    status = None
    if recipient_id is not None:
        status = db.session.execute(
            select(Recipient.status).where(Recipient.id == recipient_id)
        ).scalar_one_or_none()
    known = status is not None
    if not known:
        log.warning("%s report %s for unknown recipient %r", gateway, outcome, recipient_id)

    if outcome in ("accepted", "buffered"):
        if not known:
            return ReportResult(False, False, False)
        changed = db.session.execute(
            text(
                "UPDATE recipients SET status = 'submitted', submitted_at = COALESCE(submitted_at, :now) "
                "WHERE id = :id AND status IN ('queued', 'unknown')"
            ),
            {"id": recipient_id, "now": now},
        ).rowcount
        return ReportResult(True, False, bool(changed))

    key = (dedupe_key or f"{gateway}:{recipient_id}:{outcome}:{code}")[:120]
    stored = _insert_ignore(
        DeliveryReport.__table__,
        {
            "dedupe_key": key,
            "recipient_id": recipient_id if known else None,
            "gateway": gateway[:12],
            "outcome": outcome,
            "code": (code or "")[:20],
            "detail": detail if known else f"recipient {recipient_id!r}: {detail}"[:DETAIL_MAX],
            "received_at": now,
        },
    )
    if not (stored and known):
        return ReportResult(known, stored, False)
    reason = "" if outcome == "delivered" else (detail or code or "failed")[:200]
    changed = db.session.execute(
        text(
            "UPDATE recipients SET status = :status, reason = :reason, finished_at = :now, "
            "submitted_at = COALESCE(submitted_at, :now) "
            "WHERE id = :id AND status IN ('queued', 'submitted', 'unknown')"
        ),
        {"id": recipient_id, "status": outcome, "reason": reason, "now": now},
    ).rowcount
    if changed and outcome == "failed":
        frequency_caps.release(recipient_id)  # a failed send does not count towards the cap
    return ReportResult(True, True, bool(changed))
