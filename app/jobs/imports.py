"""CRM import jobs (R-20, R-22): the import itself on the ``import`` queue and the daily
pick-up of the newest extract.

The run row (``ImportRun``) is the record; the RQ job is keyed by it
(``crm-import-<run id>``) and reports live progress in ``job.meta["progress"]``, which
the run page polls (house style 15). Progress lives in Redis rather than in the row
because the row's own updates only become visible when the import's single transaction
commits.
"""

from __future__ import annotations

import time

from flask import current_app
from redis.exceptions import RedisError
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from app.extensions import db
from app.jobs import enqueue
from app.models import ImportRun
from app.redis_conn import get_redis
from app.services import crm_import
from app.services.errors import Conflict
from app.timeutil import utcnow

QUEUE = "import"
_DEAD = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED, JobStatus.FINISHED}


def job_id_for(run_id: int) -> str:
    return f"crm-import-{run_id}"


def launch(run_id: int) -> ImportRun:
    """Put a queued run on the ``import`` queue; commits the job id on the run first so the
    worker never sees a run without it. ``Conflict`` (after marking the run failed) when
    Redis is unreachable."""
    run = db.session.get(ImportRun, run_id)
    run.job_id = job_id_for(run_id)
    db.session.commit()
    try:
        # No automatic retry: a failed import is reported and an admin decides what next.
        enqueue(run_import_job, run_id, queue_name=QUEUE, job_id=run.job_id, retry=None)
    except RedisError:
        crm_import.mark_failed(run_id, "queue")
        raise Conflict(crm_import.describe_failure(db.session.get(ImportRun, run_id))) from None
    return run


def run_import_job(run_id: int) -> dict:
    """The RQ job: run the import, reporting progress at most twice a second."""
    job = get_current_job()
    last = [0.0]

    def progress(percent: int | None, rows: int, phase: str) -> None:
        now = time.monotonic()
        if job is None or (now - last[0] < 0.5 and phase == "reading"):
            return
        last[0] = now
        job.meta["progress"] = {"percent": percent, "rows": rows, "phase": phase}
        job.save_meta()

    run = crm_import.run_import(run_id, on_progress=progress)
    if run is None:
        return {"run": run_id, "status": "missing"}
    return {
        "run": run.id,
        "status": run.status,
        "new": run.count_new,
        "updated": run.count_updated,
        "unchanged": run.count_unchanged,
        "skipped": run.count_skipped,
        "invalid": run.count_invalid,
    }


def progress_of(run: ImportRun) -> dict:
    """What the progress bar shows: percent (None while unknown), rows read, phase."""
    if run.final:
        return {"percent": 100, "rows": run.rows_processed, "phase": run.status}
    if run.status == "queued" or not run.job_id:
        return {"percent": 0, "rows": 0, "phase": run.status}
    try:
        job = Job.fetch(run.job_id, connection=get_redis())
    except (NoSuchJobError, RedisError):
        return {"percent": None, "rows": 0, "phase": run.status}
    return job.meta.get("progress") or {"percent": 0, "rows": 0, "phase": run.status}


def refresh(run: ImportRun) -> ImportRun:
    """Mark a run failed whose job died without finishing it (a killed worker, a machine
    restart): RQ then holds the job as failed or stopped, or has lost it. A run started
    from the command line has no job; it counts as dead after the job timeout."""
    if run.final:
        return run
    dead = False
    if run.job_id:
        try:
            status = Job.fetch(run.job_id, connection=get_redis()).get_status()
            dead = status in _DEAD
        except NoSuchJobError:
            dead = True
        except RedisError:
            return run
    elif run.status == "running" and run.started_at is not None:
        age = (utcnow() - run.started_at).total_seconds()
        dead = age > current_app.config["JOB_TIMEOUT"]
    if dead:
        db.session.refresh(run)  # the job may have finished between the two reads
        if not run.final:
            crm_import.mark_failed(run.id, "stopped")
            db.session.refresh(run)
    return run


def daily_import() -> int | None:
    """The daily task (T+1, ``CRM_IMPORT_TIME``): import the newest
    ``customers_YYYYMMDD.csv`` of ``CRM_IMPORT_DIR`` unless it was imported already, or
    run the SQL source when ``CRM_IMPORT_SOURCE`` is "sql". Returns the run id queued."""
    if current_app.config.get("CRM_IMPORT_SOURCE") == "sql":
        run = crm_import.create_sql_run()
    else:
        path = crm_import.newest_extract(current_app.config["CRM_IMPORT_DIR"])
        if path is None or crm_import.already_imported(path.name):
            return None
        run = crm_import.create_file_run(path, source="schedule")
    db.session.commit()
    launch(run.id)
    return run.id
