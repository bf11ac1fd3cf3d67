"""The scheduler's tick: daily tasks run once a day, after their time, on a real worker."""

from datetime import datetime

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.jobs.scheduler import tick
from app.models import ScheduledRun
from app.services import schedule
from app.timeutil import LOCAL_TZ


@pytest.fixture
def probe_task(monkeypatch):
    """A daily task of our own at 15:00, in place of the product's list."""
    task = schedule.DailyTask("probe", "PROBE_TIME", "15:00", "tests.integration.jobs_probe.touch")
    monkeypatch.setattr(schedule, "DAILY_TASKS", [task])
    monkeypatch.setattr(schedule, "MINUTE_TASKS", [])
    return task


def test_daily_task_is_claimed_once_after_its_time(app, probe_task, db_backend):
    before = datetime(2026, 11, 24, 14, 59, tzinfo=LOCAL_TZ)
    after = datetime(2026, 11, 24, 15, 0, 30, tzinfo=LOCAL_TZ)
    later = datetime(2026, 11, 24, 18, 0, tzinfo=LOCAL_TZ)
    next_day = datetime(2026, 11, 25, 15, 1, tzinfo=LOCAL_TZ)
    assert schedule.claim_due(before) == []
    assert schedule.claim_due(after) == [probe_task]
    assert schedule.claim_due(later) == []  # a restart or second scheduler does not run it again
    assert schedule.claim_due(next_day) == [probe_task]
    days = (
        db.session.execute(select(ScheduledRun.run_date).order_by(ScheduledRun.run_date))
        .scalars()
        .all()
    )
    assert days == ["2026-11-24", "2026-11-25"]


def test_configured_time_overrides_the_default(app, probe_task, db_backend):
    app.config["PROBE_TIME"] = "16:30"
    assert schedule.claim_due(datetime(2026, 11, 24, 16, 0, tzinfo=LOCAL_TZ)) == []
    assert schedule.claim_due(datetime(2026, 11, 24, 16, 31, tzinfo=LOCAL_TZ)) == [probe_task]


def test_tick_enqueues_and_a_worker_runs_the_task(
    app, probe_task, run_jobs, redis_conn, db_backend
):
    app.config["PROBE_TIME"] = "00:00"
    started = tick()
    assert started == ["probe"]
    assert tick() == []  # the same day: nothing more
    assert run_jobs(["default"]) == 0
    assert redis_conn.get("probe:touched") == b"1"
    assert db.session.execute(select(func.count()).select_from(ScheduledRun)).scalar() == 1
