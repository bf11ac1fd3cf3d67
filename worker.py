"""The worker process IT runs next to the web server: ``python worker.py``.

It runs one RQ worker on the app's queues and, in a child process, RQ's cron
scheduler, which enqueues ``app.jobs.scheduler.tick`` every minute. Several hosts
may each run this; daily tasks are claimed in the database, so they run once.
Pass ``--no-scheduler`` on extra hosts if you want the ticks from one place only.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import signal
import sys


def run_scheduler(config: str | None) -> None:
    from rq.cron import CronScheduler

    from app import create_app
    from app.jobs.scheduler import tick
    from app.redis_conn import get_redis

    app = create_app(config)
    with app.app_context():
        scheduler = CronScheduler(connection=get_redis(), logging_level=logging.INFO)
        scheduler.register(tick, queue_name="default", interval=60)
        scheduler.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-scheduler", action="store_true", help="run only the worker")
    parser.add_argument("--queues", default="", help="comma-separated queue names")
    parser.add_argument("--config", default=None, help="config class, e.g. config.DevConfig")
    parser.add_argument(
        "--no-fork",
        action="store_true",
        help="run jobs in the worker process instead of a forked horse each "
        "(faster for the many short `send` jobs)",
    )
    args = parser.parse_args(argv)

    from app import create_app

    app = create_app(args.config)
    queues = [q for q in args.queues.split(",") if q] or list(app.config["RQ_QUEUES"])
    scheduler = None
    if not args.no_scheduler:
        ctx = multiprocessing.get_context("spawn")
        scheduler = ctx.Process(
            target=run_scheduler, args=(args.config,), name="rq-cron", daemon=True
        )
        scheduler.start()

    def stop_scheduler(*_):
        if scheduler is not None and scheduler.is_alive():
            scheduler.terminate()
            scheduler.join(10)

    def on_sigterm(*_):
        stop_scheduler()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        run_worker(app, queues, on_sigterm, simple=args.no_fork)
    finally:
        stop_scheduler()
    return 0


def run_worker(app, queues: list[str], on_sigterm, *, simple: bool = False) -> None:
    """Work until a stop is requested. RQ's worker quits when Redis goes away while a job
    runs (its heartbeat fails); a restarted Redis must not leave the host without a
    worker, so a worker that quit without being asked to is started again once Redis
    answers (the database, not Redis, holds the state of sends: nothing is lost)."""
    import time

    import redis.exceptions

    from app.jobs.worker import make_worker

    delay = 1.0
    while True:
        signal.signal(signal.SIGTERM, on_sigterm)  # RQ's handler belongs to the last worker
        try:
            worker = make_worker(app, queues, simple=simple)
            worker.work(with_scheduler=True, logging_level="INFO")
            delay = 1.0
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            logging.getLogger("worker").error(
                "Redis unreachable (%s); retrying in %.0fs", exc, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        # RQ records a requested (warm) shutdown here; only an unasked exit is retried.
        if getattr(worker, "_shutdown_requested_date", None) or getattr(
            worker, "_stop_requested", False
        ):
            return
        logging.getLogger("worker").warning("the worker quit unasked; starting it again")
        time.sleep(delay)
        delay = min(delay * 2, 30.0)


if __name__ == "__main__":
    sys.exit(main())
