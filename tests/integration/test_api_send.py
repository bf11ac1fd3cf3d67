"""API sends go through the sending area like any message (R-15, R-30, R-46, R-50):
real Redis, real RQ worker, the simulator gateway; on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Message, Recipient
from app.services import api_messages, sending
from tests.factories import make_api_client, make_customer, make_template, unit

VARS = {"account": "6225****1234", "amount": "1,000.00"}


def send(client, customers, template, **extra):
    body = {
        "template_id": template.id,
        "recipients": [
            {"crm_id": c.crm_id, "vars": dict(VARS, amount=str(i))} for i, c in enumerate(customers)
        ],
        **extra,
    }
    answer = api_messages.accept(client, body)
    db.session.commit()
    assert answer.status == 202, answer.body
    return answer.body["id"]


def outcomes(message_id):
    rows = db.session.execute(select(Recipient).where(Recipient.message_id == message_id)).scalars()
    return {r.customer_id: (r.status, r.reason) for r in rows}


def test_api_send_skips_refused_undetermined_and_inactive_customers(app, run_jobs, db_backend):
    template = make_template(urgent=True)  # urgent: quiet hours do not hold it whenever tests run
    client, _key = make_api_client(templates=[template])
    agreed = [make_customer() for _ in range(2)]
    refused = make_customer(consent="refused")
    undetermined = make_customer(consent="undetermined")
    inactive = make_customer(active=False)
    invalid = make_customer(mobile_status="invalid")
    everyone = agreed + [refused, undetermined, inactive, invalid]
    message_id = send(client, everyone, template)

    assert api_messages.message_status(client, message_id)["counts"]["pending"] == 6
    assert sending.dispatch_due() == [message_id]
    assert run_jobs() == 0

    got = outcomes(message_id)
    assert {got[c.id][0] for c in agreed} == {"delivered"}
    assert got[refused.id] == ("suppressed", "refused")
    assert got[undetermined.id] == ("suppressed", "undetermined")
    assert got[inactive.id] == ("suppressed", "inactive")
    assert got[invalid.id] == ("suppressed", "invalid_mobile")
    assert db.session.get(Message, message_id).status == "sent"

    status = api_messages.message_status(client, message_id)
    assert status["status"] == "sent" and status["sent_at"] is not None
    assert status["counts"] == {
        "pending": 0,
        "queued": 0,
        "submitted": 0,
        "delivered": 2,
        "failed": 0,
        "suppressed": 4,
        "unknown": 0,
    }
    page = api_messages.recipients_page(client, message_id, status="suppressed")
    assert page["total"] == 4
    assert [(i["index"], i["reason"]) for i in page["items"]] == [
        (2, "refused"),
        (3, "undetermined"),
        (4, "inactive"),
        (5, "invalid_mobile"),
    ]
    delivered = api_messages.recipients_page(client, message_id, status="delivered")["items"]
    assert [i["crm_id"] for i in delivered] == [c.crm_id for c in agreed]
    assert all(i["submitted_at"] and i["finished_at"] for i in delivered)


def test_a_mobile_shared_by_two_customers_gets_one_sms(app, run_jobs, db_backend):
    template = make_template(urgent=True)
    client, _key = make_api_client(templates=[template])
    first = make_customer(mobile="13700000001")
    second = make_customer(mobile="13700000001")
    body = {"template_id": template.id, "recipients": [{"mobile": "13700000001", "vars": VARS}]}
    answer = api_messages.accept(client, body)
    db.session.commit()
    assert answer.body["customers"] == 2
    sending.dispatch_due()
    assert run_jobs() == 0
    got = outcomes(answer.body["id"])
    assert got[first.id][0] == "delivered" and got[second.id] == ("suppressed", "duplicate")
    items = api_messages.recipients_page(client, answer.body["id"])["items"]
    assert [(i["index"], i["mobile"]) for i in items] == [(0, "13700000001")] * 2


def test_the_frequency_cap_applies_to_api_sends(app, run_jobs, db_backend):
    # Market information: a commercial category, capped at 2 a day by default (R-46, Art 12).
    template = make_template(
        category="market", urgent=True, content="{name}您好，您关注的{account}今日涨幅{amount}。"
    )
    client, _key = make_api_client(templates=[template])
    customer = make_customer()
    ids = []
    for _ in range(3):
        ids.append(send(client, [customer], template))
        sending.dispatch_due()
        assert run_jobs() == 0
    assert [outcomes(m)[customer.id] for m in ids] == [
        ("delivered", ""),
        ("delivered", ""),
        ("suppressed", "cap"),
    ]


def test_a_scheduled_api_send_waits_for_its_time(app, run_jobs, db_backend):
    from datetime import timedelta

    from app.timeutil import utcnow

    template = make_template(urgent=True)
    client, _key = make_api_client(templates=[template])
    customer = make_customer()
    when = (utcnow() + timedelta(hours=3)).replace(microsecond=0)
    message_id = send(client, [customer], template, schedule_at=when.isoformat() + "Z")
    assert sending.dispatch_due() == []
    assert sending.dispatch_due(now=when + timedelta(seconds=1)) == [message_id]


def test_an_hq_client_reaches_every_branch_and_a_branch_client_its_own(app, db_backend):
    from app.services.errors import ValidationError

    hq_template = make_template(author="ops_staff", approver="ops_head")
    hq_client, _ = make_api_client(unit_code="OPS", templates=[hq_template])
    bj, sh = make_customer(branch_code="BJ01"), make_customer(branch_code="SH01")
    message_id = send(hq_client, [bj, sh], hq_template)
    assert db.session.get(Message, message_id).unit_id == unit("OPS").id

    bj_template = make_template()
    bj_client, _ = make_api_client(templates=[bj_template])
    try:
        send(bj_client, [bj, sh], bj_template)
    except ValidationError as exc:
        assert exc.details["field"] == "recipients[1]"
    else:
        raise AssertionError("a branch client reached another branch's customer")


def test_values_for_gives_the_sending_area_each_customers_variables(app, db_backend):
    template = make_template()
    client, _key = make_api_client(templates=[template])
    a, b = make_customer(), make_customer()
    message_id = send(client, [a, b], template)
    values = api_messages.values_for(message_id, [a.id, b.id, 999_999])
    assert values == {a.id: dict(VARS, amount="0"), b.id: dict(VARS, amount="1")}
    assert api_messages.values_for(message_id + 1, [a.id]) == {}


def test_idempotent_replay_survives_a_second_session(app, db_backend):
    template = make_template()
    client, _key = make_api_client(templates=[template])
    customer = make_customer()
    body = {"template_id": template.id, "recipients": [{"crm_id": customer.crm_id, "vars": VARS}]}
    first = api_messages.accept(client, body, idempotency_key="batch-7")
    db.session.commit()
    client_id = client.id
    db.session.remove()
    from app.models import ApiClient

    again = api_messages.accept(
        db.session.get(ApiClient, client_id), body, idempotency_key="batch-7"
    )
    assert again.replayed and again.body == first.body
    assert db.session.execute(select(Message.id)).scalars().all() == [first.body["id"]]


def test_each_customer_gets_the_text_filled_with_their_own_values(app, run_jobs, db_backend):
    from app.models import SimulatedSms

    template = make_template(urgent=True)
    client, _key = make_api_client(templates=[template])
    a, b = make_customer(name="张三"), make_customer(name="李四")
    message_id = send(client, [a, b], template)
    sending.dispatch_due()
    assert run_jobs() == 0
    texts = dict(db.session.execute(select(SimulatedSms.mobile, SimulatedSms.text)).all())
    assert texts == {
        a.mobile: "【和兴证券】尊敬的张三，您的账户6225****1234于今日入账0元。",
        b.mobile: "【和兴证券】尊敬的李四，您的账户6225****1234于今日入账1元。",
    }
    assert db.session.get(Message, message_id).status == "sent"
