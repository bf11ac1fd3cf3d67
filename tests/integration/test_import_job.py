"""The CRM import as an RQ job on a real Redis and worker; the daily pick-up; the CLI."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from rq.job import Job
from sqlalchemy import func, select

from app.extensions import db
from app.jobs import imports as import_jobs
from app.jobs.scheduler import tick
from app.models import Customer, ImportRun
from app.services import crm_import, schedule
from app.timeutil import LOCAL_TZ, utcnow
from tests.factories import make_crm_extract, make_crm_row


def runs() -> list[ImportRun]:
    db.session.expire_all()
    return db.session.execute(select(ImportRun).order_by(ImportRun.id)).scalars().all()


def n_customers() -> int:
    return db.session.execute(select(func.count(Customer.id))).scalar_one()


def test_the_import_job_runs_on_the_import_queue_and_reports_progress(
    app, db_backend, tmp_path, run_jobs, redis_conn
):
    path = make_crm_extract(
        tmp_path / "a.csv", [make_crm_row(f"C{i:03d}", mobile=f"139{i:08d}") for i in range(1, 31)]
    )
    run = crm_import.create_file_run(path, source="cli")
    db.session.commit()
    import_jobs.launch(run.id)
    assert runs()[0].job_id == f"crm-import-{run.id}"
    assert import_jobs.progress_of(runs()[0]) == {"percent": 0, "rows": 0, "phase": "queued"}
    assert run_jobs(["default"]) == 0 and runs()[0].status == "queued"  # not on that queue
    assert run_jobs(["import"]) == 0
    run = runs()[0]
    assert (run.status, run.count_new) == ("succeeded", 30)
    job = Job.fetch(run.job_id, connection=redis_conn)
    assert job.meta["progress"] == {"percent": 100, "rows": 30, "phase": "succeeded"}
    assert job.return_value()["new"] == 30
    assert import_jobs.progress_of(run)["percent"] == 100


def test_a_redelivered_job_does_nothing(app, db_backend, tmp_path, run_jobs):
    path = make_crm_extract(tmp_path / "a.csv", [make_crm_row("C001")])
    run = crm_import.create_file_run(path, source="cli")
    db.session.commit()
    assert crm_import.run_import(run.id).status == "succeeded"
    result = import_jobs.run_import_job(run.id)
    assert result["status"] == "succeeded" and len(runs()) == 1 and n_customers() == 1


def test_a_run_whose_job_vanished_is_marked_failed(app, db_backend, tmp_path, redis_conn):
    path = make_crm_extract(tmp_path / "a.csv", [make_crm_row("C001")])
    run = crm_import.create_file_run(path, source="upload")
    db.session.commit()
    import_jobs.launch(run.id)
    run = runs()[0]
    run.status, run.started_at = "running", utcnow()  # the worker took it, then died
    db.session.commit()
    Job.fetch(run.job_id, connection=redis_conn).delete()
    run = import_jobs.refresh(run)
    assert (run.status, run.error_code) == ("failed", "stopped")
    assert "no customer data was changed" in run.error_message
    assert not path.exists()  # the uploaded copy is not kept for a run that cannot go on


@pytest.fixture
def crm_dir(app) -> Path:
    folder = Path(app.config["CRM_IMPORT_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_daily_task_imports_the_newest_extract_once(app, db_backend, crm_dir, run_jobs):
    make_crm_extract(crm_dir / "customers_20261122.csv", [make_crm_row("OLD1")])
    make_crm_extract(
        crm_dir / "customers_20261123.csv",
        [make_crm_row("C001"), make_crm_row("C002", mobile="13900000002")],
    )
    run_id = import_jobs.daily_import()
    assert run_id is not None
    assert import_jobs.daily_import() is None  # queued already: not twice
    assert run_jobs(["import"]) == 0
    run = runs()[0]
    assert (run.source, run.filename, run.status, run.count_new) == (
        "schedule",
        "customers_20261123.csv",
        "succeeded",
        2,
    )
    assert import_jobs.daily_import() is None  # imported: not again
    assert len(runs()) == 1 and n_customers() == 2  # the older extract is superseded
    make_crm_extract(
        crm_dir / "customers_20261124.csv",
        [make_crm_row("C001"), make_crm_row("C003", mobile="13900000003")],
    )
    assert import_jobs.daily_import() is not None
    assert run_jobs(["import"]) == 0
    latest = runs()[-1]
    assert (latest.filename, latest.count_new, latest.count_unchanged) == (
        "customers_20261124.csv",
        1,
        1,
    )


def test_a_failed_extract_is_tried_again_the_next_day(app, db_backend, crm_dir, run_jobs):
    (crm_dir / "customers_20261123.csv").write_bytes(b"")
    import_jobs.daily_import()
    run_jobs(["import"])
    assert runs()[0].status == "failed"
    assert import_jobs.daily_import() is not None  # a failed run does not count as imported


def test_the_scheduler_starts_the_pickup_at_the_configured_time(
    app, db_backend, crm_dir, run_jobs, monkeypatch
):
    task = next(t for t in schedule.DAILY_TASKS if t.name == "crm_import")
    assert (task.config_key, task.default_time, task.func) == (
        "CRM_IMPORT_TIME",
        "06:30",
        "app.jobs.imports.daily_import",
    )
    monkeypatch.setattr(schedule, "DAILY_TASKS", [task])
    monkeypatch.setattr(schedule, "MINUTE_TASKS", [])
    app.config["CRM_IMPORT_TIME"] = "06:30"
    assert schedule.claim_due(datetime(2026, 11, 24, 6, 29, tzinfo=LOCAL_TZ)) == []
    make_crm_extract(crm_dir / "customers_20261123.csv", [make_crm_row("C001")])
    app.config["CRM_IMPORT_TIME"] = "00:00"
    assert tick() == ["crm_import"]
    assert run_jobs(["default"]) == 0  # the pick-up queues the import ...
    assert run_jobs(["import"]) == 0  # ... which the import queue runs
    assert runs()[0].status == "succeeded" and n_customers() == 1


def test_the_sql_source_can_be_the_daily_source(app, db_backend, run_jobs, tmp_path):
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE crm_customers AS SELECT 'Q001' AS crm_id, '刘洋' AS name, "
                "'13812345678' AS mobile, 'BJ01' AS branch_code, 'bj_staff' AS manager, "
                "'2022-02-02' AS opened_on, 'C3' AS risk_level, '' AS tags, "
                "'active' AS status"
            )
        )
    engine.dispose()
    app.config.update(CRM_IMPORT_SOURCE="sql", CRM_DATABASE_URL=url)
    assert import_jobs.daily_import() is not None
    assert run_jobs(["import"]) == 0
    assert (runs()[0].source, runs()[0].count_new) == ("sql", 1)


def test_cli_import_prints_the_report(app, db_backend, runner, tmp_path):
    path = make_crm_extract(
        tmp_path / "customers_20261124.csv",
        [
            make_crm_row("C001"),
            make_crm_row("C002", mobile=""),
            make_crm_row("C003", risk_level="X"),
        ],
    )
    result = runner.invoke(args=["crm", "import", str(path), "--user", "admin"])
    assert result.exit_code == 0, result.output
    assert "new 1" in result.output and "skipped (no mobile) 1" in result.output
    assert "invalid 1" in result.output and "line 4 [C003] risk_level" in result.output
    assert runs()[0].started_by.username == "admin"
    bad = tmp_path / "bad.csv"
    bad.write_text("hello\n")
    result = runner.invoke(args=["crm", "import", str(bad)])
    assert result.exit_code == 1 and "failed" in result.output
    assert "header" in result.output


def test_demo_customers_are_seeded_once(app, db_backend, runner):
    result = runner.invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    assert "demo customers" in result.output
    total = n_customers()
    assert 250 < total <= 300
    branches = set(db.session.execute(select(Customer.branch_id).distinct()).scalars())
    assert len(branches) == 3
    states = set(db.session.execute(select(Customer.consent).distinct()).scalars())
    assert states == {"agreed", "refused", "undetermined"}
    assert (
        db.session.execute(
            select(func.count(Customer.id)).where(Customer.mobile_status != "valid")
        ).scalar_one()
        >= 3
    )
    result = runner.invoke(args=["demo", "seed"])
    assert "demo customers" not in result.output and n_customers() == total
