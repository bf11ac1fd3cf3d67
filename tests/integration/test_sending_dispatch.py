"""Dispatch on a real Redis with RQ's SimpleWorker: approved -> recipients -> sent (R-50, R-52)."""

from sqlalchemy import func, select

from app.extensions import db
from app.models import Message, Recipient, SendBatch, SendRun, SimulatedSms
from app.services import sending
from tests.factories import make_approved_message, make_customer


def test_dispatch_builds_recipients_and_sends_through_the_simulator(app, run_jobs, db_backend):
    app.config["SEND_BATCH_SIZE"] = 2
    agreed = [make_customer() for _ in range(5)]
    refused = make_customer(consent="refused")
    undetermined = make_customer(consent="undetermined")
    invalid = make_customer(mobile_status="invalid")
    twin_a = make_customer(mobile="13700000001")
    twin_b = make_customer(mobile="13700000001")
    message = make_approved_message()

    assert sending.dispatch_due() == [message.id]
    assert sending.dispatch_due() == []  # started once
    assert run_jobs() == 0

    db.session.expire_all()
    rows = {
        r.customer_id: r
        for r in db.session.execute(
            select(Recipient).where(Recipient.message_id == message.id)
        ).scalars()
    }
    for c in agreed + [twin_a]:
        assert rows[c.id].status == "delivered", rows[c.id].reason
        assert rows[c.id].segments == 1 and rows[c.id].attempts == 1
    assert rows[refused.id].status == "suppressed" and rows[refused.id].reason == "refused"
    assert rows[undetermined.id].reason == "undetermined"
    assert rows[invalid.id].reason == "invalid_mobile"
    assert rows[twin_b.id].reason == "duplicate"
    assert db.session.get(Message, message.id).status == "sent"
    run = db.session.get(SendRun, message.id)
    assert (run.state, run.eligible, run.suppressed) == ("done", 6, 4)
    # Batches of two rows in mobile order; suppressed rows take places but are not sent.
    batches = db.session.execute(select(SendBatch)).scalars().all()
    assert run.batches == len(batches) and 3 <= len(batches) <= 5
    assert sum(b.size for b in batches) == 6 and all(b.size <= 2 for b in batches)
    assert (
        db.session.execute(
            select(func.count()).select_from(SendBatch).where(SendBatch.status != "done")
        ).scalar()
        == 0
    )
    texts = db.session.execute(select(SimulatedSms.text)).scalars().all()
    assert len(texts) == 6 and set(texts) == {"【和兴证券】测试通知"}
