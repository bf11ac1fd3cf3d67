"""A real gateway (issue 5 item 9): an approved message to 100 agreed customers goes out
through Kannel to its fake SMSC with the right Chinese text, delivery reports come back
to our webhook, and a reply 'N' typed on a handset makes that customer refused."""

from collections import Counter

from sqlalchemy import func, select

from app.extensions import db
from app.models import Customer, InboundReply, Message, Recipient
from app.services import sending
from tests.factories import make_approved_message, make_customer
from tests.kannel import wait_for

pytest_plugins = ["tests.kannel.fixtures"]


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


def test_message_to_100_customers_through_kannel(app, kannel, run_jobs, db_backend):
    app.config["SMS_MAX_RATE"] = 200  # the shared limiter is in the path too
    customers = [make_customer(mobile=f"1380013{i:04d}") for i in range(100)]
    make_customer(mobile="13800139999", consent="refused")
    message = make_approved_message(body="尊敬的{name}：本周六举办投资者教育讲座，欢迎参加。")

    assert sending.dispatch_due() == [message.id]
    assert run_jobs(["send"]) == 0

    got = kannel.wait_received(100, seconds=60)
    assert len(got) == 100
    by_number = {h.to: h for h in got}
    assert set(by_number) == {c.mobile for c in customers}  # each exactly once, no refused one
    for c in customers:
        sms = by_number[c.mobile]
        assert sms.coding == "ucs-2" and sms.sender == "10690001"
        assert sms.text == f"【和兴证券】尊敬的{c.name}：本周六举办投资者教育讲座，欢迎参加。"

    # The fake SMSC reports every message (type 8, then 1); Kannel calls our webhook.
    wait_for(lambda: _statuses(message.id)["delivered"] == 100, 60, what="100 delivery reports")
    assert _statuses(message.id) == Counter({"delivered": 100, "suppressed": 1})
    db.session.expire_all()
    assert db.session.get(Message, message.id).status == "sent"

    # The customer answers 'N' from the handset: refused, with the reply as evidence.
    target = customers[7]
    kannel.mo("86" + target.mobile, "N")
    wait_for(
        lambda: (
            db.session.execute(
                select(Customer.consent)
                .where(Customer.id == target.id)
                .execution_options(populate_existing=True)
            ).scalar()
            == "refused"
        ),
        30,
        what="the reply N to refuse the customer",
    )
    reply = db.session.execute(select(InboundReply)).scalar_one()
    assert (reply.gateway, reply.mobile, reply.intent, reply.message_id) == (
        "kannel",
        target.mobile,
        "refuse",
        message.id,
    )
    # Chinese replies arrive as UTF-8 too.
    kannel.mo("86" + customers[8].mobile, "不需要")
    wait_for(
        lambda: db.session.execute(select(func.count()).select_from(InboundReply)).scalar() == 2,
        30,
        what="the second reply",
    )
    db.session.expire_all()
    assert db.session.get(Customer, customers[8].id).consent == "refused"
