"""Sending jobs (R-50): thin wrappers that take ids, reload state and call the service.

Queues: ``send`` for the recipient build and the batches; ``default`` for the minute's
dispatch and recovery, the daily consent inquiry and the simulator's reports.
"""

from __future__ import annotations

from app.services import sending


def dispatch_due() -> list[int]:
    """Start the approved messages whose time has come (scheduler, every minute)."""
    return sending.dispatch_due()


def recover() -> dict:
    """Take over dead workers' batches and re-queue lost jobs (scheduler, every minute)."""
    return sending.recover()


def build_recipients(message_id: int) -> int:
    """Build a message's recipients and queue its batches; returns how many are queued."""
    run = sending.build_recipients(message_id)
    return run.eligible if run is not None else 0


def send_batch(batch_id: int) -> str:
    """Submit one batch of recipients through the configured gateway."""
    report = sending.send_batch(batch_id)
    return f"{report.outcome} {report.counts}"


def consent_inquiry() -> int | None:
    """Create and start today's consent inquiry (scheduler, daily at CONSENT_INQUIRY_TIME)."""
    message = sending.create_consent_inquiry()
    return message.id if message is not None else None


def simulate_reports(recipient_ids: list[int]) -> int:
    """The carrier simulator's delivery reports for what it just "sent"."""
    from app.services.gateways import simulator

    return simulator.report(recipient_ids)
