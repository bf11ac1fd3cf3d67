"""The shared rate limiter (R-52) on a real Redis: one contract rate for all workers."""

import threading
import time

from app.services.ratelimit import RateLimiter


def test_unlimited_never_waits():
    limiter = RateLimiter(None, 0)
    r = limiter.reserve(1000)
    assert limiter.unlimited and r.wait == 0 and r.slot(999) <= time.monotonic()


def test_two_workers_share_one_timeline(redis_conn, db_backend):
    a = RateLimiter(redis_conn, 100, key="test:rate")
    b = RateLimiter(redis_conn, 100, key="test:rate")
    first = a.reserve(50)  # 0.5 s worth
    second = b.reserve(50)
    assert first.wait < 0.05
    assert 0.45 < second.start - first.start < 0.55
    assert abs(second.interval - 0.01) < 1e-9
    assert abs(second.slot(10) - second.start - 0.1) < 1e-9


def test_rate_holds_across_concurrent_workers(redis_conn, db_backend):
    """Four "workers" push 200 messages at 200/s: about a second, not a quarter of one."""
    sent: list[float] = []
    lock = threading.Lock()

    def worker():
        limiter = RateLimiter(redis_conn, 200, key="test:rate2")
        for _ in range(5):
            r = limiter.reserve(10)
            for i in range(10):
                pause = r.slot(i) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                with lock:
                    sent.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 200
    elapsed = max(sent) - started
    assert 0.9 < elapsed < 1.6, elapsed
    # No window of 0.25 s holds much more than its share (50) of messages.
    sent.sort()
    busiest = max(sum(1 for t in sent if s <= t < s + 0.25) for s in sent)
    assert busiest <= 60, busiest


def test_the_key_expires_when_idle(redis_conn, db_backend):
    RateLimiter(redis_conn, 1000, key="test:rate3").reserve(1)
    assert 0 < redis_conn.pttl("test:rate3") <= 1100
