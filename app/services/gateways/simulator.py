"""The carrier simulator (R-51): the default gateway for development and training.

Nothing leaves the building. Each message "sent" lands in ``simulated_sms``, the handset
inbox that the carrier-simulator page shows per number; a moment later a job reports it
delivered, or failed for numbers ending in ``SIMULATOR_FAIL_SUFFIX`` (so trainers can
show a failure). Replies typed on the simulator page take the same path as a real
customer's reply.
"""

from __future__ import annotations

import threading

from flask import current_app
from sqlalchemy import insert, select, update

from app.extensions import db
from app.models import SimulatedSms
from app.services.gateways import Outgoing, SubmitResult
from app.timeutil import utcnow


class SimulatorGateway:
    name = "simulator"

    def __init__(self, config):
        self.sender = config.get("KANNEL_FROM", "") or "10690001"
        self._pending: list[dict] = []
        self._lock = threading.Lock()

    def submit(self, sms: Outgoing) -> SubmitResult:
        with self._lock:
            self._pending.append(
                {
                    "recipient_id": sms.recipient_id,
                    "mobile": sms.mobile,
                    "sender": sms.sender or self.sender,
                    "text": sms.text,
                    "status": "sent",
                    "created_at": utcnow(),
                }
            )
        return SubmitResult.accepted(f"SIM{sms.recipient_id}")

    def flush(self) -> None:
        """Store what was "sent" and ask for the simulated delivery reports."""
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        db.session.execute(insert(SimulatedSms.__table__), rows)
        db.session.commit()
        from app.jobs import enqueue

        enqueue(
            "app.jobs.sending.simulate_reports",
            [r["recipient_id"] for r in rows],
            queue_name="default",
            retry=None,
        )

    def close(self) -> None:
        with self._lock:
            self._pending = []


def report(recipient_ids: list[int]) -> int:
    """Deliver (or, for numbers ending in SIMULATOR_FAIL_SUFFIX, fail) what was "sent" to
    these recipients, through the same report handling as a real carrier's. Commits."""
    from app.services import delivery_reports

    suffix = current_app.config.get("SIMULATOR_FAIL_SUFFIX") or ""
    rows = (
        db.session.execute(
            select(SimulatedSms).where(
                SimulatedSms.recipient_id.in_(recipient_ids), SimulatedSms.status == "sent"
            )
        )
        .scalars()
        .all()
    )
    now = utcnow()
    for row in rows:
        failed = bool(suffix) and row.mobile.endswith(suffix)
        delivery_reports.apply_report(
            gateway="simulator",
            recipient_id=row.recipient_id,
            outcome="failed" if failed else "delivered",
            code="UNDELIV" if failed else "DELIVRD",
            detail="simulated: subscriber unreachable" if failed else "",
            dedupe_key=f"simulator:{row.id}",
        )
        db.session.execute(
            update(SimulatedSms)
            .where(SimulatedSms.id == row.id)
            .values(status="failed" if failed else "delivered", reported_at=now)
        )
    db.session.commit()
    return len(rows)
