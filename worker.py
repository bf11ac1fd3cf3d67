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
    args = parser.parse_args(argv)

    from app import create_app
    from app.jobs.worker import make_worker

    app = create_app(args.config)
    queues = [q for q in args.queues.split(",") if q] or list(app.config["RQ_QUEUES"])
    scheduler = None
    if not args.no_scheduler:
        ctx = multiprocessing.get_context("spawn")
        scheduler = ctx.Process(target=run_scheduler, args=(args.config,), name="rq-cron",
                                daemon=True)
        scheduler.start()

    def stop_scheduler(*_):
        if scheduler is not None and scheduler.is_alive():
            scheduler.terminate()
            scheduler.join(10)

    signal.signal(signal.SIGTERM, lambda *a: (stop_scheduler(), sys.exit(0)))
    worker = make_worker(app, queues)
    try:
        worker.work(with_scheduler=True, logging_level="INFO")
    finally:
        stop_scheduler()
    return 0


if __name__ == "__main__":
    sys.exit(main())
