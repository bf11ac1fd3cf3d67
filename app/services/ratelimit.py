"""The shared send-rate limiter (R-52): SMS_MAX_RATE messages per second across every
worker on every host, because the carrier contract caps the rate, not each worker.

It is a GCRA ("virtual scheduling") kept in one Redis key: the key holds the time at
which the next message may go. ``reserve(n)`` moves that time n intervals ahead in one
atomic Lua call and returns when the caller's first message may go; the caller spaces
its n messages one interval apart from there. Reservations from all workers therefore
interleave into one even stream at the contract rate, with no burst beyond it. Redis's
own clock (TIME) is used, so hosts with skewed clocks still share one timeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

KEY = "sms:rate:next"

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt < now then nxt = now end
local total = tonumber(ARGV[1]) * tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%.0f', nxt + total), 'PX', math.floor((nxt + total - now) / 1000) + 1000)
return string.format('%.0f', nxt - now)
"""


@dataclass(frozen=True)
class Reservation:
    """``count`` send slots: the first at ``start`` (time.monotonic()), then every ``interval``."""

    start: float
    interval: float
    count: int

    def slot(self, i: int) -> float:
        return self.start + i * self.interval

    @property
    def wait(self) -> float:
        return max(0.0, self.start - time.monotonic())


class RateLimiter:
    """``rate`` messages per second shared through ``redis``; rate 0 means unlimited.

    ``reserve`` raises redis's ConnectionError/TimeoutError when Redis is unreachable;
    the caller decides how to wait (the sender keeps its batch and retries).
    """

    def __init__(self, redis: Redis | None, rate: int, key: str = KEY):
        self.rate = max(int(rate or 0), 0)
        self.redis = redis
        self.key = key
        self._script = (
            redis.register_script(_RESERVE) if (redis is not None and self.rate) else None
        )

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def reserve(self, n: int) -> Reservation:
        if self.unlimited or n <= 0:
            return Reservation(time.monotonic(), 0.0, n)
        interval_us = 1_000_000 / self.rate
        wait_us = int(self._script(keys=[self.key], args=[f"{interval_us:.3f}", n]))
        return Reservation(time.monotonic() + wait_us / 1_000_000, interval_us / 1_000_000, n)
