"""Pytest fixtures around the Kannel peer; test modules import the ones they use.

- ``live_app``: the test's app served on a free loopback port (Kannel calls it back);
- ``kannel``: Kannel started for that server, the app configured to send through it;
- ``worker_process``: start ``worker.py`` as its own process on the test's database and
  Redis (for the crash tests), stop it or SIGKILL it and its work horse;
- ``dedicated_redis``: a redis-server of our own on a free port, restartable (never the
  shared one on 6379).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests import kannel as kannel_peer

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def live_app(app):
    """Serve ``app`` on 127.0.0.1:<free port> in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.socket.listen(256)  # Kannel fires DLR callbacks in bursts
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def kannel(app, live_app):
    reason = kannel_peer.missing()
    if reason:
        pytest.skip(reason)
    peer = kannel_peer.KannelPeer(live_app, secrets.token_urlsafe(16))
    peer.start()
    app.config.update(peer.config())
    yield peer
    peer.cleanup()


def process_children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


class WorkerProcess:
    """``python worker.py --no-scheduler`` with a config class written for this test."""

    def __init__(self, app, tmp_path: Path, queues: str = "send,default"):
        self.app = app
        self.tmp_path = tmp_path
        self.queues = queues
        self.proc: subprocess.Popen | None = None
        self.log = tmp_path / "worker.log"

    def _write_config(self) -> str:
        keys = [
            "SQLALCHEMY_DATABASE_URI",
            "SQLALCHEMY_ENGINE_OPTIONS",
            "REDIS_URL",
            "SMS_GATEWAY",
            "KANNEL_SENDSMS_URL",
            "KANNEL_USERNAME",
            "KANNEL_PASSWORD",
            "KANNEL_FROM",
            "KANNEL_WEBHOOK_TOKEN",
            "PUBLIC_BASE_URL",
            "SMS_MAX_RATE",
            "SEND_BATCH_SIZE",
            "SEND_CHUNK_SIZE",
            "SEND_CONCURRENCY",
            "SEND_LEASE_SECONDS",
            "SEND_REQUEUE_SECONDS",
            "SMS_GATEWAY_TIMEOUT",
        ]
        values = {k: self.app.config[k] for k in keys}
        module = self.tmp_path / "worker_test_config.py"
        lines = [f"    {key} = {value!r}\n" for key, value in values.items()]
        module.write_text(
            "import config\n\n\nclass WorkerTestConfig(config.TestConfig):\n" + "".join(lines)
        )
        return "worker_test_config.WorkerTestConfig"

    def start(self) -> WorkerProcess:
        config_path = self._write_config()
        env = dict(os.environ, PYTHONPATH=f"{self.tmp_path}:{ROOT}")
        out = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "worker.py"),
                "--no-scheduler",
                "--queues",
                self.queues,
                "--config",
                config_path,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
        out.close()
        return self

    def kill_hard(self) -> None:
        """SIGKILL the worker and its work horse at once: a crashed host."""
        assert self.proc is not None
        victims = process_children(self.proc.pid) + [self.proc.pid]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        horses = process_children(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill_hard()
        for pid in horses:  # a work horse left behind by a worker that lost Redis
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def output(self) -> str:
        """The worker's log without RQ's scheduler-lock chatter."""
        if not self.log.exists():
            return ""
        lines = self.log.read_text("utf-8", "replace").splitlines()
        return "\n".join(line for line in lines if "Scheduler lock" not in line)


@pytest.fixture
def worker_process(app, tmp_path):
    started: list[WorkerProcess] = []

    def _start(queues: str = "send,default") -> WorkerProcess:
        worker = WorkerProcess(app, tmp_path, queues).start()
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.stop()


class RedisServer:
    def __init__(self, tmp_path: Path):
        self.port = kannel_peer.free_port()
        self.dir = tmp_path / "redis"
        self.dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        # No persistence: a restart loses every job, the harder case.
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not kannel_peer.wait_port(self.port, 10):
            raise RuntimeError("redis-server did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def dedicated_redis(app, tmp_path):
    """A restartable redis-server of this test's own; the app uses it while the test runs."""
    if not any(os.access(Path(d) / "redis-server", os.X_OK) for d in os.environ["PATH"].split(":")):
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path).start()
    saved_url, saved_client = app.config["REDIS_URL"], app.extensions.pop("redis", None)
    app.config["REDIS_URL"] = server.url
    yield server
    server.stop()
    app.extensions.pop("redis", None)
    app.config["REDIS_URL"] = saved_url
    if saved_client is not None:
        app.extensions["redis"] = saved_client
