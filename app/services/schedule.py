"""What runs when: the daily and per-minute tasks the scheduler starts.

The worker process runs RQ's cron scheduler with one entry, ``app.jobs.scheduler.tick``
every minute. ``tick`` asks ``claim_due`` which tasks are due now in Asia/Shanghai
time. A daily task is claimed by inserting (task, day) into ``scheduled_runs``; the
primary key makes the claim exclusive, so a restarted or second scheduler never
runs a daily task twice, and a task missed while the worker was down runs at the
next tick of the same day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import ScheduledRun
from app.timeutil import local_now, utcnow


@dataclass(frozen=True)
class DailyTask:
    name: str
    config_key: str  # config entry holding "HH:MM" in Asia/Shanghai
    default_time: str
    func: str  # dotted path of the job function
    queue: str = "default"


@dataclass(frozen=True)
class MinuteTask:
    name: str
    func: str
    queue: str = "default"


# Areas append their tasks here (customers: CRM import; sending: dispatch, consent inquiry).
DAILY_TASKS: list[DailyTask] = []
MINUTE_TASKS: list[MinuteTask] = []

# Sending: start due messages, recover lost work, ask new customers.
MINUTE_TASKS.append(MinuteTask("sending.dispatch", "app.jobs.sending.dispatch_due"))
MINUTE_TASKS.append(MinuteTask("sending.recover", "app.jobs.sending.recover"))
DAILY_TASKS.append(
    DailyTask(
        "consent_inquiry", "CONSENT_INQUIRY_TIME", "15:00", "app.jobs.sending.consent_inquiry"
    )
)

# Messages: the frequency cap's kept list follows the settings, and is recounted
# whole once a day.
MINUTE_TASKS.append(
    MinuteTask("frequency_caps.recount_stale", "app.jobs.messages.recount_stale_caps")
)
DAILY_TASKS.append(
    DailyTask(
        "frequency_caps.recount", "CAP_RECOUNT_TIME", "00:10", "app.jobs.messages.recount_caps"
    )
)
# Customers: the T+1 CRM import of the newest extract.
DAILY_TASKS.append(
    DailyTask("crm_import", "CRM_IMPORT_TIME", "06:30", "app.jobs.imports.daily_import")
)

# REST API: Idempotency-Keys are kept for API_IDEMPOTENCY_HOURS, then forgotten.
DAILY_TASKS.append(
    DailyTask(
        "api_idempotency_purge", "API_PURGE_TIME", "03:20", "app.jobs.api.purge_idempotency_keys"
    )
)


def _task_time(task: DailyTask) -> time:
    raw = current_app.config.get(task.config_key) or task.default_time
    hours, minutes = (int(x) for x in raw.split(":"))
    return time(hours, minutes)


def claim_due(now: datetime | None = None) -> list[DailyTask]:
    """The daily tasks due at ``now`` (aware, default: now in Asia/Shanghai) that this
    caller won the claim for; commits each claim."""
    now = now or local_now()
    won = []
    for task in DAILY_TASKS:
        if now.time() < _task_time(task):
            continue
        db.session.add(
            ScheduledRun(task=task.name, run_date=now.date().isoformat(), started_at=utcnow())
        )
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            continue
        won.append(task)
    return won
