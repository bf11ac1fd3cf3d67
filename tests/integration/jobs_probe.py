"""A job for the scheduler tests: it leaves a mark in Redis."""

from app.redis_conn import get_redis


def touch():
    get_redis().incr("probe:touched")
