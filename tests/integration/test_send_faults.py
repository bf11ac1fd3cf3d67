"""Fault tests (issue 5 item 10) with real processes: a worker killed with SIGKILL in the
middle of a 2,000-recipient send, and Redis restarted (without persistence) in the middle
of one. Either way every recipient gets one outcome, and no number receives the message
twice at Kannel's fake SMSC."""

import time
from collections import Counter

import pytest
import redis.exceptions
from sqlalchemy import func, insert, select

from app.extensions import db
from app.models import Customer, Message, Recipient
from app.services import sending
from app.timeutil import utcnow
from tests.factories import make_approved_message, unit
from tests.kannel import wait_for

pytest_plugins = ["tests.kannel.fixtures"]

N = 2000


def _customers(n: int) -> None:
    branch = unit("BJ01")
    now = utcnow()
    db.session.execute(
        insert(Customer),
        [
            dict(
                crm_id=f"F{i:07d}",
                name=f"客户{i}",
                mobile=f"1370000{i:04d}",
                mobile_tail=f"{i:04d}",
                mobile_status="valid",
                carrier="china_mobile",
                branch_id=branch.id,
                risk_level="C3",
                tags="",
                active=True,
                consent="agreed",
                created_at=now,
                updated_at=now,
                awaiting_assignment=False,
                row_hash="",
            )
            for i in range(n)
        ],
    )
    db.session.commit()


def _statuses(message_id: int) -> Counter:
    db.session.expire_all()
    return Counter(
        dict(
            db.session.execute(
                select(Recipient.status, func.count())
                .where(Recipient.message_id == message_id)
                .group_by(Recipient.status)
            ).all()
        )
    )


def _sent(message_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(Message, message_id).status == "sent"


def _recover_until_sent(message_id: int, seconds: float) -> None:
    """What the scheduler's minute task does, every second instead of every minute."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sending.recover()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            db.session.rollback()
        if _sent(message_id):
            return
        time.sleep(1)
    raise AssertionError(f"not sent after {seconds}s: {_statuses(message_id)}")


def _settle(kannel, message_id: int) -> list:
    """Wait until Kannel has reported every SMS it received; returns what it received."""

    def settled():
        got = kannel.received()
        counts = _statuses(message_id)
        return got if counts["delivered"] == len(got) and counts["submitted"] == 0 else None

    return wait_for(settled, 60, step=0.5, what="every delivery report")


def _check_exactly_once(kannel, message_id: int) -> Counter:
    got = _settle(kannel, message_id)
    per_number = Counter(h.to for h in got)
    assert per_number and max(per_number.values()) == 1, per_number.most_common(3)
    counts = _statuses(message_id)
    assert counts["queued"] == 0 and counts["failed"] == 0
    assert counts["delivered"] + counts["unknown"] == N
    delivered = set(
        db.session.execute(
            select(Recipient.mobile).where(
                Recipient.message_id == message_id, Recipient.status == "delivered"
            )
        ).scalars()
    )
    assert delivered == set(per_number)  # whatever reached a handset is recorded as such
    attempts = db.session.execute(
        select(func.max(Recipient.attempts)).where(Recipient.message_id == message_id)
    ).scalar()
    assert attempts <= 1  # nothing was submitted twice
    return counts


@pytest.fixture
def fault_config(app):
    app.config.update(
        SMS_MAX_RATE=400,
        SEND_BATCH_SIZE=500,
        SEND_CHUNK_SIZE=50,
        SEND_LEASE_SECONDS=3,
        SEND_REQUEUE_SECONDS=2,
        SEND_CONCURRENCY=4,
    )


def test_worker_killed_mid_send(
    app, fault_config, dedicated_redis, kannel, worker_process, db_backend
):
    _customers(N)
    message = make_approved_message()
    assert sending.dispatch_due() == [message.id]
    first = worker_process()
    wait_for(
        lambda: len(kannel.received()) >= 600, 60, what="600 messages out", context=first.output
    )
    first.kill_hard()
    at_kill = len(kannel.received())
    assert at_kill < N, "the send finished before the kill: nothing was tested"

    worker_process()
    _recover_until_sent(message.id, 120)
    counts = _check_exactly_once(kannel, message.id)
    # Only what was in flight when the worker died may be unknown: at most two chunks.
    assert counts["unknown"] <= 2 * app.config["SEND_CHUNK_SIZE"]


def test_redis_restarted_mid_send(
    app, fault_config, dedicated_redis, kannel, worker_process, db_backend
):
    _customers(N)
    message = make_approved_message()
    assert sending.dispatch_due() == [message.id]
    worker = worker_process()
    wait_for(
        lambda: len(kannel.received()) >= 500, 60, what="500 messages out", context=worker.output
    )
    dedicated_redis.stop()  # every queued job is gone with it
    time.sleep(2)
    dedicated_redis.start()
    assert len(kannel.received()) < N, "the send finished before Redis went away"

    _recover_until_sent(message.id, 120)
    counts = _check_exactly_once(kannel, message.id)
    assert counts["unknown"] == 0 and counts["delivered"] == N, worker.output()[-3000:]
