"""The 15:00 consent inquiry (R-33) and quiet hours (R-46) at send time."""

from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Customer, Message, Recipient, SendBatch, SimulatedSms
from app.services import message_settings, schedule, sending
from app.timeutil import LOCAL_TZ, local_now, local_to_utc, local_today, utcnow
from tests.factories import make_approved_message, make_customer

SPEC_TEXT = (
    "尊敬的客户:感谢您成为和兴证券客户,后续如有重要信息将会通过短信方式提醒您,"
    "如愿接收此服务,回复'Y'。不回复将取消短信服务"
)


@pytest.fixture
def no_quiet_hours(app, user):
    message_settings.save({"quiet_hours": {"start": "", "end": ""}}, actor=user("admin"))
    db.session.commit()


def test_inquiry_goes_once_to_undetermined_customers_opened_before_today(
    app, no_quiet_hours, run_jobs, db_backend
):
    yesterday = local_today() - timedelta(days=1)
    due = make_customer(consent="undetermined", opened_on=yesterday, mobile="13500000001")
    no_date = make_customer(
        consent="undetermined",
        opened_on=None,
        mobile="13500000002",
        created_at=utcnow() - timedelta(days=2),
    )
    twin_a = make_customer(consent="undetermined", opened_on=yesterday, mobile="13500000003")
    twin_b = make_customer(consent="undetermined", opened_on=yesterday, mobile="13500000003")
    skipped = [
        make_customer(consent="undetermined", opened_on=local_today()),  # opened today
        make_customer(consent="agreed", opened_on=yesterday),
        make_customer(consent="refused", opened_on=yesterday),
        make_customer(consent="undetermined", opened_on=yesterday, active=False),
        make_customer(consent="undetermined", opened_on=yesterday, mobile_status="invalid"),
        make_customer(consent="undetermined", opened_on=yesterday, inquiry_sent_at=utcnow()),
        # shares its number with a customer who refused: the phone never gets the inquiry
        make_customer(consent="undetermined", opened_on=yesterday, mobile="13500000009"),
    ]
    make_customer(consent="refused", mobile="13500000009")

    assert sending.inquiry_candidates() == 4
    message = sending.create_consent_inquiry()
    assert (message.category, message.author_id, message.route) == ("inquiry", None, "system")
    assert message.unit.is_market and message.body == SPEC_TEXT
    assert run_jobs() == 0

    db.session.expire_all()
    assert db.session.get(Message, message.id).status == "sent"
    rows = {r.customer_id: r for r in db.session.execute(select(Recipient)).scalars()}
    assert set(rows) == {due.id, no_date.id, twin_a.id, twin_b.id}
    assert rows[twin_b.id].status == "suppressed" and rows[twin_b.id].reason == "duplicate"
    texts = db.session.execute(select(SimulatedSms.mobile, SimulatedSms.text)).all()
    assert sorted(m for m, _t in texts) == ["13500000001", "13500000002", "13500000003"]
    assert {t for _m, t in texts} == {"【和兴证券】" + SPEC_TEXT}  # verbatim, with the signature
    for c in (due, no_date, twin_a, twin_b):
        assert db.session.get(Customer, c.id).inquiry_sent_at is not None
    for c in skipped[:-2]:
        assert c.id not in rows

    # Never twice: the next run (the next day, or a rerun) finds nobody.
    assert sending.inquiry_candidates() == 0
    assert sending.create_consent_inquiry() is None


def test_the_scheduler_runs_the_inquiry_at_15_00(app, no_quiet_hours, run_jobs, db_backend):
    make_customer(consent="undetermined", opened_on=local_today() - timedelta(days=3))
    today = local_now().date()
    before = schedule.claim_due(datetime.combine(today, time(14, 59), tzinfo=LOCAL_TZ))
    assert "consent_inquiry" not in [t.name for t in before]
    at = schedule.claim_due(datetime.combine(today, time(15, 0), tzinfo=LOCAL_TZ))
    assert "consent_inquiry" in [t.name for t in at]
    again = schedule.claim_due(datetime.combine(today, time(17, 0), tzinfo=LOCAL_TZ))
    assert "consent_inquiry" not in [t.name for t in again]  # once a day
    from app.jobs import sending as jobs

    message_id = jobs.consent_inquiry()
    assert run_jobs() == 0
    assert db.session.get(Message, message_id).status == "sent"


def test_a_refusal_before_the_build_keeps_the_inquiry_away(app, no_quiet_hours, db_backend):
    c = make_customer(consent="undetermined", opened_on=local_today() - timedelta(days=1))
    message = sending.create_consent_inquiry()
    # The customer opts out by phone before the worker builds the recipients.
    db.session.execute(
        Customer.__table__.update().where(Customer.id == c.id).values(consent="refused")
    )
    db.session.commit()
    run = sending.build_recipients(message.id)
    assert run.eligible == 0 and run.state == "done"
    assert db.session.get(Message, message.id).status == "sent"


def _quiet_around_now():
    now = local_now()
    start = (now - timedelta(hours=1)).strftime("%H:%M")
    end = (now + timedelta(hours=1)).strftime("%H:%M")
    return {"start": start, "end": end}


def test_quiet_hours_hold_non_urgent_messages(app, db_backend):
    make_customer()
    calm = make_approved_message(urgent=False)
    urgent = make_approved_message(urgent=True)
    night = local_to_utc(datetime(2026, 11, 24, 22, 30))
    assert sending.dispatch_due(now=night) == [urgent.id]
    morning = local_to_utc(datetime(2026, 11, 25, 8, 0))
    assert sending.dispatch_due(now=morning) == [calm.id]


def test_a_batch_reached_in_quiet_hours_waits_for_the_morning(app, user, db_backend):
    message_settings.save({"quiet_hours": _quiet_around_now()}, actor=user("admin"))
    db.session.commit()
    make_customer()
    message = make_approved_message(urgent=False)
    assert sending.start_message(message.id)
    sending.build_recipients(message.id)
    batch = db.session.execute(select(SendBatch)).scalar_one()
    report = sending.send_batch(batch.id)
    assert report.outcome == "held"
    db.session.refresh(batch)
    assert batch.status == "queued" and batch.not_before > utcnow() + timedelta(minutes=30)
    assert db.session.execute(select(Recipient.status)).scalar() == "queued"


def test_frequency_cap_is_checked_again_at_send_time(app, run_jobs, db_backend):
    """A customer who reached the category's daily cap after the preview is left out now."""
    c = make_customer()
    audience = {"kind": "customers", "branches": [c.branch_id]}
    first = make_approved_message(category="market", audience=audience)
    second = make_approved_message(category="market", audience=audience)
    third = make_approved_message(category="market", audience=audience)
    for m in (first, second, third):
        assert sending.start_message(m.id)
        sending.build_recipients(m.id)
    reasons = [
        db.session.execute(select(Recipient.reason).where(Recipient.message_id == m.id)).scalar()
        for m in (first, second, third)
    ]
    assert message_settings.get("caps")["market"]["day"] == 2
    assert reasons == ["", "", "cap"]
