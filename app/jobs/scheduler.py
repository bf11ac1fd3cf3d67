"""The scheduler's minute tick: enqueue whatever is due."""

from __future__ import annotations

from app.jobs import enqueue
from app.services import schedule


def tick() -> list[str]:
    """Enqueue the per-minute tasks and the daily tasks this tick claimed; return their names."""
    started = []
    for task in schedule.MINUTE_TASKS:
        enqueue(task.func, queue_name=task.queue, retry=None)
        started.append(task.name)
    for task in schedule.claim_due():
        enqueue(task.func, queue_name=task.queue)
        started.append(task.name)
    return started
