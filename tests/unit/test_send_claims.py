"""Claims, in-flight marks, unknown outcomes, retries and recovery (R-52), driven with a
scripted gateway so every outcome can be forced."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import AuditLog, Message, Recipient, SendBatch, SendRun
from app.services import sending
from app.services.errors import Conflict
from app.services.gateways import SubmitResult
from app.services.ratelimit import RateLimiter
from app.timeutil import utcnow
from tests.factories import make_approved_message, make_customer


class ScriptedGateway:
    """Answers from a script keyed by mobile (default: accepted); remembers what it got."""

    name = "scripted"

    def __init__(self, script=None):
        self.script = script or {}
        self.sent: list[str] = []

    def submit(self, sms):
        self.sent.append(sms.mobile)
        answer = self.script.get(sms.mobile, "accepted")
        if isinstance(answer, Exception):
            raise answer
        return SubmitResult(
            answer, reference=f"ref-{sms.recipient_id}", reason=f"scripted {answer}"
        )

    def flush(self):
        pass

    def close(self):
        pass


UNLIMITED = RateLimiter(None, 0)


@pytest.fixture
def built(app, run_jobs):
    """A message to six agreed customers, built into batches of two, not yet sent."""
    app.config.update(SEND_BATCH_SIZE=2, SEND_CHUNK_SIZE=2, SEND_MAX_ATTEMPTS=3)
    customers = [make_customer(mobile=f"1361111000{i}") for i in range(6)]
    message = make_approved_message()
    assert sending.start_message(message.id)
    run = sending.build_recipients(message.id)
    assert run.state == "sending" and run.eligible == 6 and run.batches == 3
    batches = db.session.execute(select(SendBatch).order_by(SendBatch.batch_no)).scalars().all()
    return message, customers, batches


def _status(message_id):
    db.session.expire_all()
    return dict(
        db.session.execute(
            select(Recipient.mobile, Recipient.status).where(Recipient.message_id == message_id)
        ).all()
    )


def test_a_batch_is_sent_once_however_often_its_job_runs(app, built, db_backend):
    message, customers, batches = built
    gw = ScriptedGateway()
    first = sending.send_batch(batches[0].id, gateway=gw, limiter=UNLIMITED)
    again = sending.send_batch(batches[0].id, gateway=gw, limiter=UNLIMITED)
    assert (first.outcome, again.outcome) == ("done", "not_claimed")
    assert gw.sent == [customers[0].mobile, customers[1].mobile]
    for b in batches[1:]:
        sending.send_batch(b.id, gateway=gw, limiter=UNLIMITED)
    assert sorted(gw.sent) == sorted(c.mobile for c in customers)
    assert set(_status(message.id).values()) == {"submitted"}
    assert db.session.get(Message, message.id).status == "sent"
    assert db.session.get(SendRun, message.id).state == "done"


def test_a_live_claim_is_not_taken_over(app, built, db_backend):
    _message, _customers, batches = built
    token = "a" * 32
    assert sending._claim(batches[0].id, token, utcnow()) is not None
    assert sending._claim(batches[0].id, "b" * 32, utcnow()) is None
    report = sending.send_batch(batches[0].id, gateway=ScriptedGateway(), limiter=UNLIMITED)
    assert report.outcome == "not_claimed"


def test_a_dead_workers_chunk_becomes_unknown_and_the_rest_is_sent(app, built, db_backend):
    message, customers, batches = built
    batch = batches[0]
    # A worker claimed the batch, marked its first recipient in flight, then died.
    first_id = batch.first_id
    assert sending._claim(batch.id, "dead" * 8, utcnow())
    assert sending._owns(batch.id, "dead" * 8, inflight_lo=first_id, inflight_hi=first_id)
    db.session.execute(
        update(SendBatch)
        .where(SendBatch.id == batch.id)
        .values(heartbeat_at=utcnow() - timedelta(seconds=600))
    )
    db.session.commit()

    gw = ScriptedGateway()
    assert sending.send_batch(batch.id, gateway=gw, limiter=UNLIMITED).outcome == "done"
    statuses = _status(message.id)
    assert statuses[customers[0].mobile] == "unknown"  # never sent again without an operator
    assert statuses[customers[1].mobile] == "submitted"
    assert gw.sent == [customers[1].mobile]
    lost = db.session.get(Recipient, first_id)
    assert lost.reason == sending.LOST_REASON and lost.finished_at is not None
    assert db.session.execute(
        select(AuditLog).where(AuditLog.action == "send.batch_taken_over")
    ).scalar()


def test_a_late_answer_settles_the_unknown_truthfully(app, built, db_backend):
    message, customers, batches = built
    batch = batches[0]
    db.session.execute(
        update(Recipient)
        .where(Recipient.id == batch.first_id)
        .values(status="unknown", reason="lost")
    )
    db.session.commit()
    row = sending._Row(batch.first_id, customers[0].mobile, "", "", "china_mobile")
    sending._record(
        batch,
        "nobody",
        [row],
        ["【和兴证券】测试通知"],
        [SubmitResult.accepted("r1")],
        {"default": "0.05"},
        3,
    )
    assert _status(message.id)[customers[0].mobile] == "submitted"


def test_an_answer_never_overwrites_a_delivery_report(app, built, db_backend):
    message, customers, batches = built
    batch = batches[0]
    db.session.execute(
        update(Recipient).where(Recipient.id == batch.first_id).values(status="delivered")
    )
    db.session.commit()
    row = sending._Row(batch.first_id, customers[0].mobile, "", "", "")
    sending._record(batch, "x", [row], ["t"], [SubmitResult.accepted("r")], {"default": "0.05"}, 3)
    r = db.session.get(Recipient, batch.first_id)
    db.session.refresh(r)
    assert r.status == "delivered" and r.submitted_at is not None


def test_permanent_and_unknown_answers(app, built, db_backend):
    message, customers, batches = built
    gw = ScriptedGateway({customers[0].mobile: "permanent", customers[1].mobile: "unknown"})
    sending.send_batch(batches[0].id, gateway=gw, limiter=UNLIMITED)
    statuses = _status(message.id)
    assert statuses[customers[0].mobile] == "failed"
    assert statuses[customers[1].mobile] == "unknown"


def test_gateway_exception_counts_as_unknown(app, built, db_backend):
    message, customers, batches = built
    gw = ScriptedGateway({customers[0].mobile: RuntimeError("boom")})
    sending.send_batch(batches[0].id, gateway=gw, limiter=UNLIMITED)
    assert _status(message.id)[customers[0].mobile] == "unknown"


def test_transient_errors_back_off_then_fail(app, built, db_backend):
    message, customers, batches = built
    mobile = customers[0].mobile
    gw = ScriptedGateway({mobile: "transient"})
    report = sending.send_batch(batches[0].id, gateway=gw, limiter=UNLIMITED)
    assert report.outcome == "released"
    batch = db.session.get(SendBatch, batches[0].id)
    db.session.refresh(batch)
    assert batch.status == "queued" and batch.not_before > utcnow()
    assert _status(message.id)[mobile] == "queued"
    # Too early: nobody may claim it before its backoff ends.
    assert sending.send_batch(batch.id, gateway=gw, limiter=UNLIMITED).outcome == "not_claimed"
    for _attempt in (2, 3):
        db.session.execute(
            update(SendBatch)
            .where(SendBatch.id == batch.id)
            .values(not_before=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
        sending.send_batch(batch.id, gateway=gw, limiter=UNLIMITED)
    r = db.session.execute(select(Recipient).where(Recipient.mobile == mobile)).scalar_one()
    assert (r.status, r.attempts) == ("failed", 3)
    assert gw.sent.count(mobile) == 3
    assert gw.sent.count(customers[1].mobile) == 1  # the other one went on the first run


def test_retry_unknown_is_an_audited_operator_action(app, built, user, db_backend):
    message, customers, batches = built
    gw = ScriptedGateway({customers[0].mobile: "unknown"})
    for b in batches:
        sending.send_batch(b.id, gateway=gw, limiter=UNLIMITED)
    assert db.session.get(Message, message.id).status == "sent"
    admin = user("admin")
    assert sending.retry_unknown(message.id, actor=admin) == 1
    db.session.expire_all()
    assert db.session.get(Message, message.id).status == "sending"
    new = db.session.execute(select(SendBatch).where(SendBatch.batch_no == 3)).scalar_one()
    sending.send_batch(new.id, gateway=ScriptedGateway(), limiter=UNLIMITED)
    assert set(_status(message.id).values()) == {"submitted"}
    assert db.session.get(Message, message.id).status == "sent"
    entry = db.session.execute(
        select(AuditLog).where(AuditLog.action == "send.unknown_retried")
    ).scalar_one()
    assert entry.actor_id == admin.id and '"recipients": 1' in entry.details
    with pytest.raises(Conflict):
        sending.retry_unknown(message.id, actor=admin)


def test_recover_requeues_lost_jobs_and_takes_over_dead_batches(app, built, redis_conn, db_backend):
    from rq import Queue

    message, _customers, batches = built
    redis_conn.flushdb()  # the jobs the build queued are lost (a Redis restart)
    old = utcnow() - timedelta(seconds=600)
    db.session.execute(update(SendBatch).values(enqueued_at=old))
    db.session.execute(
        update(SendBatch)
        .where(SendBatch.id == batches[2].id)
        .values(status="sending", claim_token="z" * 32, heartbeat_at=old)
    )
    db.session.commit()
    report = sending.recover()
    assert report["taken_over"] == 1 and report["requeued"] == 2
    assert len(Queue("send", connection=redis_conn).job_ids) == 3
    assert sending.recover()["requeued"] == 0  # the jobs are waiting now: not doubled


def test_recover_queues_a_held_batch_whose_scheduler_died(app, built, redis_conn, db_backend):
    """A batch held back for later waits on a worker's RQ scheduler; if that worker died,
    nobody moves the job. Once it is overdue, recover queues it (once), instead of taking
    the scheduled job for pending forever."""
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    message, _customers, batches = built
    redis_conn.flushdb()
    held = batches[0]
    due = utcnow() + timedelta(seconds=30)
    sending._enqueue_batch(held.id, at=due)  # as a release with backoff does
    db.session.execute(update(SendBatch).values(enqueued_at=utcnow() - timedelta(seconds=600)))
    db.session.commit()
    scheduled = ScheduledJobRegistry("send", connection=redis_conn)
    job_id = sending.BATCH_JOB.format(held.id)
    # Not yet due: pending, left alone (the other two batches' jobs were lost: requeued).
    assert sending.recover()["requeued"] == 2
    assert job_id in scheduled.get_job_ids()
    # Long overdue and still not moved by any scheduler: queued now, and only once.
    later = due + timedelta(seconds=app.config["SEND_REQUEUE_SECONDS"] + 1)
    db.session.execute(update(SendBatch).values(enqueued_at=utcnow() - timedelta(seconds=600)))
    db.session.commit()
    assert sending.recover(now=later)["requeued"] == 1
    assert job_id not in scheduled.get_job_ids()
    assert Queue("send", connection=redis_conn).job_ids.count(job_id) == 1


def test_a_build_runs_once(app, db_backend):
    make_customer()
    message = make_approved_message()
    assert sending.start_message(message.id)
    assert not sending.start_message(message.id)
    assert sending.build_recipients(message.id) is not None
    assert sending.build_recipients(message.id) is None
    count = db.session.execute(select(func.count()).select_from(Recipient)).scalar()
    assert count == 1


def test_editing_after_approval_stops_the_start(app, db_backend):
    message = make_approved_message(version=2, approved_version=1)
    assert not sending.start_message(message.id)
    assert db.session.get(Message, message.id).status == "approved"
